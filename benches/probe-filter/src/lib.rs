//! A proxy-wasm HTTP filter that does nothing but the host calls its configuration names, on
//! every request's headers. With an empty configuration it is the floor: what Envoy charges for
//! hosting a filter with sidetrace's callbacks. With `present:4` it adds four header reads, and
//! the difference is what one read costs. It speaks the ABI directly, like sidetrace, so the
//! floor includes no SDK dispatch.
//!
//! Configuration: whitespace-separated `call:count`, e.g. `absent:4 time:2`, made on request
//! headers; `done.call:count` makes them when the stream is done instead, when the response's
//! attributes exist, and `response.call:count` on the response's headers, reading and writing
//! that map. `expr` evaluates the CEL expression written after a `|` (Envoy's
//! `expr_evaluate`), e.g. `done.expr:4 | [response.code, request.protocol]`.

#[cfg(target_arch = "wasm32")]
mod filter {
    use std::cell::RefCell;

    const REQUEST_HEADERS: u32 = 0;
    const RESPONSE_HEADERS: u32 = 2;
    const PLUGIN_CONFIGURATION: u32 = 7;

    #[link(wasm_import_module = "env")]
    extern "C" {
        fn proxy_get_buffer_bytes(
            kind: u32,
            start: usize,
            max: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_get_header_map_pairs(map: u32, data: *mut *mut u8, size: *mut usize) -> u32;
        fn proxy_get_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_replace_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_add_header_map_value(
            map: u32,
            key: *const u8,
            key_size: usize,
            value: *const u8,
            value_size: usize,
        ) -> u32;
        fn proxy_remove_header_map_value(map: u32, key: *const u8, key_size: usize) -> u32;
        fn proxy_set_header_map_pairs(map: u32, data: *const u8, size: usize) -> u32;
        fn proxy_get_property(
            path: *const u8,
            path_size: usize,
            data: *mut *mut u8,
            size: *mut usize,
        ) -> u32;
        fn proxy_get_current_time_nanoseconds(time: *mut u64) -> u32;
        fn proxy_call_foreign_function(
            name: *const u8,
            name_size: usize,
            arguments: *const u8,
            arguments_size: usize,
            results: *mut *mut u8,
            results_size: *mut usize,
        ) -> u32;
    }

    /// One kind of host call, as the configuration names it.
    #[derive(Clone, Copy)]
    enum Call {
        /// A request header the request does not have: no value to hand over.
        Absent,
        /// A request header it has (`:path`): the host allocates a buffer in the VM for it.
        Present,
        /// All request headers at once.
        Pairs,
        /// An attribute (`request.protocol`).
        Property,
        Replace,
        Add,
        /// Removing a header the request does not have.
        Remove,
        /// Removing `x-probe`, which the map has (a route's `response_headers_to_add` in the
        /// benchmark that prices it).
        RemoveProbe,
        Time,
        /// Envoy's `expr_evaluate` foreign function on the expression configured after `|`.
        Expression,
        /// All request headers read, then set back as one map with four headers more (a
        /// `traceparent` and B3's three): what writing them costs as one call.
        SetPairs,
    }

    const TRACEPARENT: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    impl Call {
        fn parse(name: &str) -> Option<Call> {
            Some(match name {
                "absent" => Call::Absent,
                "present" => Call::Present,
                "pairs" => Call::Pairs,
                "property" => Call::Property,
                "replace" => Call::Replace,
                "add" => Call::Add,
                "remove" => Call::Remove,
                "removeprobe" => Call::RemoveProbe,
                "time" => Call::Time,
                "expr" => Call::Expression,
                "setpairs" => Call::SetPairs,
                _ => return None,
            })
        }

        /// Makes the call on header map `map` (request or response headers).
        fn make(self, map: u32) {
            let (mut data, mut size) = (std::ptr::null_mut(), 0);
            // SAFETY: every slice outlives its call; buffers the host fills are released below.
            unsafe {
                match self {
                    Call::Absent => proxy_get_header_map_value(
                        map,
                        b"x-absent".as_ptr(),
                        8,
                        &mut data,
                        &mut size,
                    ),
                    Call::Present => {
                        proxy_get_header_map_value(map, b":path".as_ptr(), 5, &mut data, &mut size)
                    }
                    Call::Pairs => proxy_get_header_map_pairs(map, &mut data, &mut size),
                    Call::Property => {
                        proxy_get_property(b"request\0protocol".as_ptr(), 16, &mut data, &mut size)
                    }
                    Call::Replace => proxy_replace_header_map_value(
                        map,
                        b"x-probe".as_ptr(),
                        7,
                        TRACEPARENT.as_ptr(),
                        TRACEPARENT.len(),
                    ),
                    Call::Add => proxy_add_header_map_value(
                        map,
                        b"x-probe".as_ptr(),
                        7,
                        TRACEPARENT.as_ptr(),
                        TRACEPARENT.len(),
                    ),
                    Call::Remove => proxy_remove_header_map_value(map, b"x-absent".as_ptr(), 8),
                    Call::RemoveProbe => proxy_remove_header_map_value(map, b"x-probe".as_ptr(), 7),
                    Call::Time => {
                        let mut now = 0;
                        proxy_get_current_time_nanoseconds(&mut now)
                    }
                    Call::SetPairs => {
                        proxy_get_header_map_pairs(map, &mut data, &mut size);
                        let read = if data.is_null() {
                            &[][..]
                        } else {
                            std::slice::from_raw_parts(data, size)
                        };
                        let more = with_four_more(read);
                        proxy_set_header_map_pairs(map, more.as_ptr(), more.len())
                    }
                    Call::Expression => {
                        let token = TOKEN.with(|t| *t.borrow()).to_le_bytes();
                        let status = proxy_call_foreign_function(
                            b"expr_evaluate".as_ptr(),
                            13,
                            token.as_ptr(),
                            4,
                            &mut data,
                            &mut size,
                        );
                        // A failed evaluation would price the failure, not the call: stop.
                        if status != 0 {
                            std::arch::wasm32::unreachable();
                        }
                        status
                    }
                };
            }
            release(data, size);
        }
    }

    /// A serialized header map (count, then name and value lengths, then each name and value
    /// followed by a NUL) with four pairs appended.
    fn with_four_more(map: &[u8]) -> Vec<u8> {
        const MORE: [(&[u8], &[u8]); 4] = [
            (b"traceparent", TRACEPARENT),
            (b"x-b3-traceid", b"0af7651916cd43dd8448eb211c80319c"),
            (b"x-b3-spanid", b"b7ad6b7169203331"),
            (b"x-b3-sampled", b"1"),
        ];
        let count =
            map.get(..4)
                .map_or(0, |c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])) as usize;
        let lengths_end = 4 + 8 * count;
        let mut out = Vec::with_capacity(map.len() + 256);
        out.extend_from_slice(&((count + MORE.len()) as u32).to_le_bytes());
        out.extend_from_slice(&map[4.min(map.len())..lengths_end.min(map.len())]);
        for (name, value) in MORE {
            out.extend_from_slice(&(name.len() as u32).to_le_bytes());
            out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        }
        out.extend_from_slice(&map[lengths_end.min(map.len())..]);
        for (name, value) in MORE {
            out.extend_from_slice(name);
            out.push(0);
            out.extend_from_slice(value);
            out.push(0);
        }
        out
    }

    fn release(data: *mut u8, size: usize) {
        if !data.is_null() && size > 0 {
            // SAFETY: the host obtained it from `proxy_on_memory_allocate` below.
            drop(unsafe { Vec::from_raw_parts(data, size, size) });
        }
    }

    thread_local! {
        static CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
        /// Calls made when the stream is done (words prefixed `done.`), after the response.
        static DONE_CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
        /// Calls made on the response's headers (words prefixed `response.`).
        static RESPONSE_CALLS: RefCell<Vec<Call>> = const { RefCell::new(Vec::new()) };
        static TOKEN: RefCell<u32> = const { RefCell::new(0) };
        /// Root contexts are done too, when Envoy stops; they have no stream to read from.
        static ROOTS: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
    }

    #[no_mangle]
    pub extern "C" fn proxy_abi_version_0_2_1() {}

    #[no_mangle]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        let mut buffer = std::mem::ManuallyDrop::new(Vec::<u8>::with_capacity(size));
        buffer.as_mut_ptr()
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_vm_start(_: u32, _: usize) -> u32 {
        1
    }

    /// Refuses a configuration it cannot read, so a mistyped benchmark fails instead of
    /// measuring nothing.
    #[no_mangle]
    pub extern "C" fn proxy_on_configure(_: u32, size: usize) -> u32 {
        let (mut data, mut returned) = (std::ptr::null_mut(), 0);
        // SAFETY: the host writes a buffer pointer and its length.
        unsafe { proxy_get_buffer_bytes(PLUGIN_CONFIGURATION, 0, size, &mut data, &mut returned) };
        let text = if data.is_null() || returned == 0 {
            Vec::new()
        } else {
            // SAFETY: as in `release`.
            unsafe { Vec::from_raw_parts(data, returned, returned) }
        };
        let text = String::from_utf8_lossy(&text);
        let (words, expression) = text.split_once('|').unwrap_or((&text, ""));
        if !expression.trim().is_empty() {
            let expression = expression.trim();
            let (mut out, mut out_size) = (std::ptr::null_mut(), 0);
            // SAFETY: as for the other host calls.
            let status = unsafe {
                proxy_call_foreign_function(
                    b"expr_create".as_ptr(),
                    11,
                    expression.as_ptr(),
                    expression.len(),
                    &mut out,
                    &mut out_size,
                )
            };
            if status != 0 || out_size != 4 {
                return 0;
            }
            // SAFETY: the host wrote four bytes there.
            let token = unsafe { std::ptr::read_unaligned(out as *const u32) };
            release(out, out_size);
            TOKEN.with(|t| *t.borrow_mut() = token);
        }
        let (mut calls, mut done_calls, mut response_calls) = (Vec::new(), Vec::new(), Vec::new());
        for item in words.split_whitespace() {
            let Some((name, count)) = item.split_once(':') else {
                return 0;
            };
            let (list, name) = if let Some(name) = name.strip_prefix("done.") {
                (&mut done_calls, name)
            } else if let Some(name) = name.strip_prefix("response.") {
                (&mut response_calls, name)
            } else {
                (&mut calls, name)
            };
            let (Some(call), Ok(count)) = (Call::parse(name), count.parse::<usize>()) else {
                return 0;
            };
            list.extend(std::iter::repeat_n(call, count));
        }
        CALLS.with(|c| *c.borrow_mut() = calls);
        DONE_CALLS.with(|c| *c.borrow_mut() = done_calls);
        RESPONSE_CALLS.with(|c| *c.borrow_mut() = response_calls);
        1
    }

    #[cfg(feature = "context-create")]
    #[no_mangle]
    pub extern "C" fn proxy_on_context_create(context_id: u32, parent_id: u32) {
        if parent_id == 0 {
            ROOTS.with(|roots| roots.borrow_mut().push(context_id));
        }
    }

    /// Makes every call of one of the lists above, on header map `map`.
    fn make_all(calls: &'static std::thread::LocalKey<RefCell<Vec<Call>>>, map: u32) {
        calls.with(|calls| calls.borrow().iter().for_each(|call| call.make(map)));
    }

    #[no_mangle]
    pub extern "C" fn proxy_on_request_headers(_: u32, _: usize, _: u32) -> u32 {
        make_all(&CALLS, REQUEST_HEADERS);
        0
    }

    #[cfg(feature = "response-headers")]
    #[no_mangle]
    pub extern "C" fn proxy_on_response_headers(_: u32, _: usize, _: u32) -> u32 {
        make_all(&RESPONSE_CALLS, RESPONSE_HEADERS);
        0
    }

    #[cfg(feature = "done")]
    #[no_mangle]
    pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
        if ROOTS.with(|roots| roots.borrow().contains(&context_id)) {
            return 1;
        }
        make_all(&DONE_CALLS, REQUEST_HEADERS);
        1
    }
}

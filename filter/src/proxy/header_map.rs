//! The request's header map in one host call, as the bytes the host wrote. The SDK's reader
//! turns every header into two heap strings, which was most of the filter's own work on an
//! unsampled request (benches/README.md, "Reading the header map"); this hands the buffer over
//! whole, for `HeaderBlock` to index in place.

use proxy_wasm::types::MapType;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_get_header_map_pairs(map_type: MapType, data: *mut *mut u8, size: *mut usize) -> u32;
}

/// The request headers' serialized pairs; empty when the host has none to give.
pub fn request_header_pairs() -> Vec<u8> {
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the host writes a pointer and a length. The pointer comes from the module's own
    // `proxy_on_memory_allocate` (the SDK's, which leaks a boxed slice of exactly `size` bytes),
    // so the buffer is ours to own as a `Vec` of that length and capacity, as the SDK's own
    // readers take it.
    unsafe {
        let status = proxy_get_header_map_pairs(MapType::HttpRequestHeaders, &mut data, &mut size);
        if status != 0 || data.is_null() {
            return Vec::new();
        }
        Vec::from_raw_parts(data, size, size)
    }
}

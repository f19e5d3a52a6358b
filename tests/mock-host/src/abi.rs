//! Host side of the proxy-wasm ABI v0.2.1 calls the module makes, plus the five WASI preview1
//! calls its standard library uses. Statuses and memory conventions follow the ABI: the host
//! hands data back by asking the module to allocate (`proxy_on_memory_allocate`) and writing the
//! pointer and size where the module said.

use crate::state::{deserialize_map, serialize_map, GrpcCall, HostState, LogEntry};
use wasmtime::{format_err as anyhow, Result};
use wasmtime::{Caller, Extern, Linker, Memory};

const OK: i32 = 0;
const NOT_FOUND: i32 = 1;
const BAD_ARGUMENT: i32 = 2;
const INTERNAL_FAILURE: i32 = 10;

const REQUEST_HEADERS: i32 = 0;
const RESPONSE_HEADERS: i32 = 2;
const GRPC_INITIAL_METADATA: i32 = 4;
const GRPC_TRAILING_METADATA: i32 = 5;
const GRPC_RECEIVE_BUFFER: i32 = 5;
const VM_CONFIGURATION: i32 = 6;
const PLUGIN_CONFIGURATION: i32 = 7;

type C<'a> = Caller<'a, HostState>;

fn memory(caller: &mut C) -> Result<Memory> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory),
        _ => Err(anyhow!("module exports no memory")),
    }
}

fn read(caller: &mut C, ptr: i32, len: i32) -> Result<Vec<u8>> {
    let mut out = vec![0u8; len as usize];
    memory(caller)?.read(&caller, ptr as u32 as usize, &mut out)?;
    Ok(out)
}

fn read_string(caller: &mut C, ptr: i32, len: i32) -> Result<String> {
    Ok(String::from_utf8(read(caller, ptr, len)?)?)
}

fn write(caller: &mut C, ptr: i32, bytes: &[u8]) -> Result<()> {
    memory(caller)?.write(caller, ptr as u32 as usize, bytes)?;
    Ok(())
}

fn write_u32(caller: &mut C, ptr: i32, value: u32) -> Result<()> {
    write(caller, ptr, &value.to_le_bytes())
}

/// Copies `bytes` into module memory it allocates, and stores pointer and size for it.
fn hand_back(caller: &mut C, bytes: &[u8], return_ptr: i32, return_size: i32) -> Result<i32> {
    let allocate = caller
        .get_export("proxy_on_memory_allocate")
        .and_then(Extern::into_func)
        .ok_or_else(|| anyhow!("module exports no proxy_on_memory_allocate"))?
        .typed::<i32, i32>(&caller)?;
    let ptr = allocate.call(&mut *caller, bytes.len() as i32)?;
    write(caller, ptr, bytes)?;
    write_u32(caller, return_ptr, ptr as u32)?;
    write_u32(caller, return_size, bytes.len() as u32)?;
    Ok(OK)
}

fn header_map(state: &mut HostState, map_type: i32) -> Option<&mut Vec<(String, Vec<u8>)>> {
    let context = state.current_context;
    let stream = state.streams.get_mut(&context)?;
    match map_type {
        REQUEST_HEADERS => Some(&mut stream.request_headers),
        RESPONSE_HEADERS => Some(&mut stream.response_headers),
        _ => None,
    }
}

/// `proxy_replace_header_map_value` (`replace`) and `proxy_add_header_map_value`.
fn write_header(
    mut caller: C,
    map: i32,
    key: (i32, i32),
    value: (i32, i32),
    replace: bool,
) -> Result<i32> {
    let key = read_string(&mut caller, key.0, key.1)?;
    let value = read(&mut caller, value.0, value.1)?;
    let call = if replace { "replace" } else { "add" };
    caller.data_mut().header_writes.push((call, key.clone()));
    let Some(target) = header_map(caller.data_mut(), map) else {
        return Ok(NOT_FOUND);
    };
    if replace {
        target.retain(|(k, _)| *k != key);
    }
    target.push((key, value));
    Ok(OK)
}

pub fn add_to_linker(linker: &mut Linker<HostState>) -> Result<()> {
    add_proxy_basics(linker)?;
    add_headers(linker)?;
    add_properties(linker)?;
    add_foreign_functions(linker)?;
    add_grpc(linker)?;
    add_metrics(linker)?;
    add_wasi(linker)?;
    Ok(())
}

fn add_proxy_basics(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_log",
        |mut caller: C, level: i32, ptr: i32, len: i32| -> Result<i32> {
            let message = String::from_utf8_lossy(&read(&mut caller, ptr, len)?).into_owned();
            caller.data_mut().logs.push(LogEntry {
                level: level as u32,
                message,
            });
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_log_level",
        |mut caller: C, ret: i32| -> Result<i32> {
            write_u32(&mut caller, ret, 2)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_current_time_nanoseconds",
        |mut caller: C, ret: i32| -> Result<i32> {
            let now = caller.data().now_nanos;
            write(&mut caller, ret, &now.to_le_bytes())?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_tick_period_milliseconds",
        |mut caller: C, period: i32| -> i32 {
            caller.data_mut().tick_period_ms = period as u32;
            OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_buffer_bytes",
        |mut caller: C,
         kind: i32,
         start: i32,
         max: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> Result<i32> {
            let buffer = match kind {
                PLUGIN_CONFIGURATION => caller.data().plugin_config.clone(),
                VM_CONFIGURATION => Vec::new(),
                GRPC_RECEIVE_BUFFER => caller.data().grpc_receive_buffer.clone(),
                _ => return Ok(NOT_FOUND),
            };
            let start = (start as usize).min(buffer.len());
            let end = start.saturating_add(max as u32 as usize).min(buffer.len());
            if start == end {
                return Ok(NOT_FOUND);
            }
            hand_back(&mut caller, &buffer[start..end], ret_ptr, ret_size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_effective_context",
        |mut caller: C, context: i32| -> i32 {
            caller.data_mut().current_context = context as u32;
            OK
        },
    )?;
    linker.func_wrap("env", "proxy_done", |mut caller: C| -> i32 {
        caller.data_mut().done_called = true;
        OK
    })?;
    linker.func_wrap(
        "env",
        "proxy_continue_stream",
        |_caller: C, _stream: i32| -> i32 { OK },
    )?;
    Ok(())
}

fn add_headers(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_header_map_pairs",
        |mut caller: C, map: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            if map == REQUEST_HEADERS {
                caller.data_mut().request_header_reads.push("*".into());
            }
            let Some(pairs) = header_map(caller.data_mut(), map).cloned() else {
                return Ok(NOT_FOUND);
            };
            hand_back(&mut caller, &serialize_map(&pairs), ret_ptr, ret_size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_header_map_pairs",
        |mut caller: C, map: i32, ptr: i32, len: i32| -> Result<i32> {
            let bytes = read(&mut caller, ptr, len)?;
            let Some(pairs) = deserialize_map(&bytes) else {
                return Ok(BAD_ARGUMENT);
            };
            match header_map(caller.data_mut(), map) {
                Some(target) => {
                    *target = pairs;
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_header_map_value",
        |mut caller: C,
         map: i32,
         key_ptr: i32,
         key_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> Result<i32> {
            let key = read_string(&mut caller, key_ptr, key_len)?;
            if map == REQUEST_HEADERS {
                caller.data_mut().request_header_reads.push(key.clone());
            }
            // Envoy serves gRPC metadata only inside stream callbacks; elsewhere it answers
            // BadArgument, on which the SDK aborts the VM.
            if map == GRPC_TRAILING_METADATA && caller.data().in_trailing_metadata_callback {
                let value = caller
                    .data()
                    .grpc_trailing_metadata
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| v.clone());
                return match value {
                    Some(value) => hand_back(&mut caller, &value, ret_ptr, ret_size),
                    None => Ok(NOT_FOUND),
                };
            }
            if map == GRPC_INITIAL_METADATA || map == GRPC_TRAILING_METADATA {
                return Ok(BAD_ARGUMENT);
            }
            let value = header_map(caller.data_mut(), map)
                .and_then(|m| m.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()));
            match value {
                Some(value) => hand_back(&mut caller, &value, ret_ptr, ret_size),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_replace_header_map_value",
        |caller: C, map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| {
            write_header(
                caller,
                map,
                (key_ptr, key_len),
                (value_ptr, value_len),
                true,
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_add_header_map_value",
        |caller: C, map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32| {
            write_header(
                caller,
                map,
                (key_ptr, key_len),
                (value_ptr, value_len),
                false,
            )
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_remove_header_map_value",
        |mut caller: C, map: i32, key_ptr: i32, key_len: i32| -> Result<i32> {
            let key = read_string(&mut caller, key_ptr, key_len)?;
            caller
                .data_mut()
                .header_writes
                .push(("remove", key.clone()));
            let Some(target) = header_map(caller.data_mut(), map) else {
                return Ok(NOT_FOUND);
            };
            target.retain(|(k, _)| *k != key);
            Ok(OK)
        },
    )?;
    Ok(())
}

fn add_properties(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_get_property",
        |mut caller: C, ptr: i32, len: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let path = read(&mut caller, ptr, len)?;
            let read_path = String::from_utf8_lossy(&path).replace('\0', ".");
            caller.data_mut().properties_read.push(read_path);
            let state = caller.data();
            let value = state
                .streams
                .get(&state.current_context)
                .and_then(|s| s.properties.get(&path))
                .or_else(|| state.properties.get(&path))
                .cloned();
            match value {
                Some(value) => hand_back(&mut caller, &value, ret_ptr, ret_size),
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_set_property",
        |mut caller: C, ptr: i32, len: i32, value_ptr: i32, value_len: i32| -> Result<i32> {
            let path = read_string(&mut caller, ptr, len)?;
            let value = read(&mut caller, value_ptr, value_len)?;
            let state = caller.data_mut();
            let context = state.current_context;
            match state.streams.get_mut(&context) {
                Some(stream) => {
                    stream.filter_state.insert(path, value);
                    Ok(OK)
                }
                None => Ok(NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

/// An attribute as `proxy_get_property` finds it: the stream's, else the host's.
fn attribute(state: &HostState, dotted: &str) -> Option<Vec<u8>> {
    let path = dotted.replace('.', "\0").into_bytes();
    state
        .streams
        .get(&state.current_context)
        .and_then(|s| s.properties.get(&path))
        .or_else(|| state.properties.get(&path))
        .cloned()
}

/// Envoy's CEL foreign functions (`expressions` has the subset understood).
fn add_foreign_functions(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_call_foreign_function",
        |mut caller: C,
         name_ptr: i32,
         name_len: i32,
         args_ptr: i32,
         args_len: i32,
         ret_ptr: i32,
         ret_size: i32|
         -> Result<i32> {
            let name = read_string(&mut caller, name_ptr, name_len)?;
            let arguments = read(&mut caller, args_ptr, args_len)?;
            if !caller.data().expressions_supported {
                return Ok(NOT_FOUND);
            }
            let token = |arguments: &[u8]| -> Option<usize> {
                Some(u32::from_le_bytes(arguments.try_into().ok()?) as usize)
            };
            match name.as_str() {
                "expr_create" => {
                    let text = String::from_utf8(arguments).unwrap_or_default();
                    if !crate::expressions::parses(&text) {
                        return Ok(BAD_ARGUMENT);
                    }
                    let expressions = &mut caller.data_mut().expressions;
                    expressions.push(Some(text));
                    let token = (expressions.len() - 1) as u32;
                    hand_back(&mut caller, &token.to_le_bytes(), ret_ptr, ret_size)
                }
                "expr_evaluate" => {
                    let state = caller.data();
                    let Some(Some(text)) = token(&arguments).and_then(|t| state.expressions.get(t))
                    else {
                        return Ok(NOT_FOUND);
                    };
                    let text = text.clone();
                    let answer = crate::expressions::evaluate(&text, &|a| attribute(state, a));
                    caller.data_mut().expressions_evaluated.push(text);
                    match answer {
                        Some(answer) => hand_back(&mut caller, &answer, ret_ptr, ret_size),
                        None => Ok(INTERNAL_FAILURE),
                    }
                }
                "expr_delete" => {
                    if let Some(slot) =
                        token(&arguments).and_then(|t| caller.data_mut().expressions.get_mut(t))
                    {
                        *slot = None;
                    }
                    Ok(OK)
                }
                _ => Ok(NOT_FOUND),
            }
        },
    )?;
    Ok(())
}

fn add_grpc(linker: &mut Linker<HostState>) -> Result<()> {
    // Exports are streams; the unary `proxy_grpc_call` is left to trap if it were ever used.
    #[allow(clippy::too_many_arguments)]
    fn grpc_stream(
        mut caller: C,
        cluster_ptr: i32,
        cluster_len: i32,
        service_ptr: i32,
        service_len: i32,
        method_ptr: i32,
        method_len: i32,
        metadata_ptr: i32,
        metadata_len: i32,
        ret_token: i32,
    ) -> Result<i32> {
        if caller.data().refuse_grpc {
            if caller.data().close_refused_inline {
                // As an async client may: the failure reaches the close callback before the
                // call that opened the stream returns.
                let token = caller.data().next_token;
                caller.data_mut().next_token += 1;
                let root = caller.data().current_context;
                if let Some(close) = caller
                    .get_export("proxy_on_grpc_close")
                    .and_then(|export| export.into_func())
                {
                    let close = close.typed::<(i32, i32, i32), ()>(&caller)?;
                    close.call(&mut caller, (root as i32, token as i32, 14))?;
                }
            }
            return Ok(INTERNAL_FAILURE);
        }
        let cluster = read_string(&mut caller, cluster_ptr, cluster_len)?;
        let service = read_string(&mut caller, service_ptr, service_len)?;
        let method = read_string(&mut caller, method_ptr, method_len)?;
        let metadata =
            deserialize_map(&read(&mut caller, metadata_ptr, metadata_len)?).unwrap_or_default();
        let token = caller.data().next_token;
        caller.data_mut().next_token += 1;
        caller.data_mut().open_streams.insert(
            token,
            GrpcCall {
                token,
                cluster,
                service,
                method,
                metadata,
                payload: Vec::new(),
            },
        );
        write_u32(&mut caller, ret_token, token)?;
        Ok(OK)
    }
    linker.func_wrap("env", "proxy_grpc_stream", grpc_stream)?;
    linker.func_wrap(
        "env",
        "proxy_grpc_send",
        |mut caller: C, token: i32, ptr: i32, len: i32, end_stream: i32| -> Result<i32> {
            let message = read(&mut caller, ptr, len)?;
            let state = caller.data_mut();
            let Some(call) = state.open_streams.get_mut(&(token as u32)) else {
                return Ok(NOT_FOUND);
            };
            call.payload.extend_from_slice(&message);
            if end_stream != 0 {
                let call = state.open_streams.remove(&(token as u32)).expect("present");
                state.grpc_calls.push(call);
            }
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_get_status",
        |mut caller: C, ret_code: i32, ret_ptr: i32, ret_size: i32| -> Result<i32> {
            let (code, message) = caller.data().grpc_status.clone();
            write_u32(&mut caller, ret_code, code)?;
            hand_back(&mut caller, message.as_bytes(), ret_ptr, ret_size)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_cancel",
        |mut caller: C, token: i32| -> i32 {
            caller.data_mut().cancelled.push(token as u32);
            OK
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_grpc_close",
        |_caller: C, _token: i32| -> i32 { OK },
    )?;
    Ok(())
}

fn add_metrics(linker: &mut Linker<HostState>) -> Result<()> {
    linker.func_wrap(
        "env",
        "proxy_define_metric",
        |mut caller: C, kind: i32, ptr: i32, len: i32, ret_id: i32| -> Result<i32> {
            let name = read_string(&mut caller, ptr, len)?;
            let metrics = &mut caller.data_mut().metrics;
            let id = match metrics.iter().position(|m| m.0 == name) {
                Some(id) => id,
                None => {
                    metrics.push((name, kind as u32, 0));
                    metrics.len() - 1
                }
            };
            write_u32(&mut caller, ret_id, id as u32)?;
            Ok(OK)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_record_metric",
        |mut caller: C, id: i32, value: i64| -> i32 {
            update_metric(&mut caller, id, |held| *held = value)
        },
    )?;
    linker.func_wrap(
        "env",
        "proxy_increment_metric",
        |mut caller: C, id: i32, delta: i64| -> i32 {
            update_metric(&mut caller, id, |held| *held += delta)
        },
    )?;
    Ok(())
}

fn update_metric(caller: &mut C, id: i32, update: impl FnOnce(&mut i64)) -> i32 {
    match caller.data_mut().metrics.get_mut(id as usize) {
        Some(metric) => {
            update(&mut metric.2);
            OK
        }
        None => NOT_FOUND,
    }
}

fn add_wasi(linker: &mut Linker<HostState>) -> Result<()> {
    const WASI: &str = "wasi_snapshot_preview1";
    linker.func_wrap(
        WASI,
        "random_get",
        |mut caller: C, ptr: i32, len: i32| -> Result<i32> {
            // Deterministic bytes: tests need reproducible runs, not secrecy.
            let bytes: Vec<u8> = (0..len as usize)
                .map(|i| (i as u8).wrapping_mul(151).wrapping_add(7))
                .collect();
            write(&mut caller, ptr, &bytes)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_sizes_get",
        |mut caller: C, count_ptr: i32, size_ptr: i32| -> Result<i32> {
            let env = caller.data().env.clone();
            let size: usize = env.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
            write_u32(&mut caller, count_ptr, env.len() as u32)?;
            write_u32(&mut caller, size_ptr, size as u32)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "environ_get",
        |mut caller: C, pointers: i32, buffer: i32| -> Result<i32> {
            let env = caller.data().env.clone();
            let mut at = buffer;
            for (i, (k, v)) in env.iter().enumerate() {
                let entry = format!("{k}={v}\0");
                write_u32(&mut caller, pointers + 4 * i as i32, at as u32)?;
                write(&mut caller, at, entry.as_bytes())?;
                at += entry.len() as i32;
            }
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "clock_time_get",
        |mut caller: C, _id: i32, _precision: i64, ret: i32| -> Result<i32> {
            let now = caller.data().now_nanos;
            write(&mut caller, ret, &now.to_le_bytes())?;
            Ok(0)
        },
    )?;
    linker.func_wrap(
        WASI,
        "fd_write",
        |mut caller: C, _fd: i32, iovs: i32, count: i32, written: i32| -> Result<i32> {
            let mut total = 0u32;
            let mut text = Vec::new();
            for i in 0..count {
                let entry = read(&mut caller, iovs + 8 * i, 8)?;
                let ptr = u32::from_le_bytes(entry[0..4].try_into()?) as i32;
                let len = u32::from_le_bytes(entry[4..8].try_into()?) as i32;
                text.extend(read(&mut caller, ptr, len)?);
                total += len as u32;
            }
            caller.data_mut().logs.push(LogEntry {
                level: 99,
                message: String::from_utf8_lossy(&text).into_owned(),
            });
            write_u32(&mut caller, written, total)?;
            Ok(0)
        },
    )?;
    linker.func_wrap(WASI, "proc_exit", |_caller: C, code: i32| -> Result<()> {
        Err(anyhow!(
            "the module called proc_exit({code}) (a panic aborts the VM)"
        ))
    })?;
    Ok(())
}

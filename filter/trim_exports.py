#!/usr/bin/env python3
"""Removes the proxy-wasm callbacks sidetrace never uses from a built module's exports.

The Rust SDK exports every callback of the ABI. Envoy calls an exported callback on every event
it names: `proxy_on_request_body` and `proxy_on_response_body` on every body chunk of every
request, the connection callbacks on every read. Without the export the host skips the call,
and wasm-opt then drops the dead code behind it.

    python3 filter/trim_exports.py in.wasm out.wasm
"""
import sys

UNUSED = {
    "proxy_on_request_body", "proxy_on_request_trailers", "proxy_on_request_metadata",
    "proxy_on_response_body", "proxy_on_response_trailers", "proxy_on_response_metadata",
    "proxy_on_new_connection", "proxy_on_downstream_data", "proxy_on_upstream_data",
    "proxy_on_downstream_connection_close", "proxy_on_upstream_connection_close",
    "proxy_on_http_call_response", "proxy_on_queue_ready", "proxy_on_foreign_function",
}
EXPORT_SECTION = 7


def read_leb(data, at):
    value, shift = 0, 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def write_leb(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def trimmed_exports(body):
    count, at = read_leb(body, 0)
    kept = []
    for _ in range(count):
        start = at
        length, at = read_leb(body, at)
        name = body[at:at + length].decode()
        at += length + 1  # name, then the export kind byte
        _, at = read_leb(body, at)  # index
        if name not in UNUSED:
            kept.append(body[start:at])
    return write_leb(len(kept)) + b"".join(kept), count - len(kept)


def main(source, target):
    data = open(source, "rb").read()
    if data[:4] != b"\0asm":
        sys.exit(f"{source}: not a wasm module")
    out, at, removed = bytearray(data[:8]), 8, 0
    while at < len(data):
        section = data[at]
        size, body_at = read_leb(data, at + 1)
        body = data[body_at:body_at + size]
        if section == EXPORT_SECTION:
            body, removed = trimmed_exports(body)
        out += bytes([section]) + write_leb(len(body)) + body
        at = body_at + size
    open(target, "wb").write(out)
    print(f"{target}: {removed} unused callbacks no longer exported")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])

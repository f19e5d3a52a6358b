//! Compiles the vendored OTLP protocol files into prost types with a pure-Rust parser,
//! so building needs no `protoc` on the machine.
use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "opentelemetry/proto/collector/trace/v1/trace_service.proto",
    "google/rpc/status.proto",
    "google/rpc/error_details.proto",
];

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    println!("cargo:rerun-if-changed={}", root.display());
    let descriptors = protox::compile(PROTOS, [&root]).unwrap_or_else(|error| {
        panic!(
            "cannot parse the OTLP protocol files under {}: {error}",
            root.display()
        )
    });
    prost_build::Config::new()
        .include_file("protocol.rs")
        .compile_fds(descriptors)
        .expect("prost-build could not generate the OTLP types");
}

//! proxy-wasm glue (to be written)

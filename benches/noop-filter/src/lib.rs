//! A proxy-wasm HTTP filter that does nothing: what Envoy charges per request for hosting any
//! Rust filter (context creation, one call per stream event), measured beside sidetrace.

#[cfg(target_arch = "wasm32")]
mod filter {
    use proxy_wasm::traits::{Context, HttpContext, RootContext};
    use proxy_wasm::types::{ContextType, LogLevel};

    proxy_wasm::main! {{
        proxy_wasm::set_log_level(LogLevel::Warn);
        proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(NoopRoot) });
    }}

    struct NoopRoot;
    impl Context for NoopRoot {}
    impl RootContext for NoopRoot {
        fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
            Some(Box::new(NoopStream))
        }
        fn get_type(&self) -> Option<ContextType> {
            Some(ContextType::HttpContext)
        }
    }

    struct NoopStream;
    impl Context for NoopStream {}
    impl HttpContext for NoopStream {}
}

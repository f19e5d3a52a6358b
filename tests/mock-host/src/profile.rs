//! Where a module's wasm instructions go, function by function: a statistical profile of the
//! module's call stacks, sampled at random moments while its code (not the host's) runs, and
//! scaled to the instructions executed so the figures read like the `cost` example's.

use crate::state::HostState;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use wasmtime::{Store, UpdateDeadline, WasmBacktrace};

/// Call stacks, outermost frame first, and how many samples found each on top.
pub type Stacks = HashMap<Vec<String>, u64>;

pub struct StackSampler {
    stacks: Arc<Mutex<Stacks>>,
    running: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl StackSampler {
    pub(crate) fn start(store: &mut Store<HostState>, every: Duration) -> StackSampler {
        let stacks = Arc::new(Mutex::new(Stacks::new()));
        let running = Arc::new(AtomicBool::new(true));
        let crossings = store.data().crossings.clone();
        // The stretch of module code a tick was asked in: the module only notices a tick at its
        // next epoch check, and a check reached after returning from the host would put the
        // sample on whatever runs first afterwards, so such samples are dropped.
        let asked_in = Arc::new(AtomicU64::new(0));
        let recorded = stacks.clone();
        let (sampled_crossings, sampled_stretch) = (crossings.clone(), asked_in.clone());
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |context| {
            // Calling this callback is itself a crossing into the host.
            let crossings_since_asked =
                sampled_crossings.load(Ordering::Relaxed) - sampled_stretch.load(Ordering::Relaxed);
            if crossings_since_asked == 1 {
                let stack: Vec<String> = WasmBacktrace::force_capture(&context)
                    .frames()
                    .iter()
                    .rev()
                    .map(|frame| match frame.func_name() {
                        Some(name) => name.to_string(),
                        None => format!("#{}", frame.func_index()),
                    })
                    .collect();
                *recorded.lock().unwrap().entry(stack).or_default() += 1;
            }
            Ok(UpdateDeadline::Continue(1))
        });
        let engine = store.engine().clone();
        let ticking = running.clone();
        let ticker = std::thread::spawn(move || {
            while ticking.load(Ordering::Relaxed) {
                std::thread::sleep(every);
                let stretch = crossings.load(Ordering::Relaxed);
                if stretch % 2 == 1 {
                    asked_in.store(stretch, Ordering::Relaxed);
                    engine.increment_epoch();
                }
            }
        });
        StackSampler {
            stacks,
            running,
            ticker: Some(ticker),
        }
    }

    /// Stops sampling and hands over what was recorded.
    pub fn finish(mut self) -> Stacks {
        self.running.store(false, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        std::mem::take(&mut self.stacks.lock().unwrap())
    }
}

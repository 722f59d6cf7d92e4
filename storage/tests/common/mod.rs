#![allow(dead_code)]
//! Test helpers: run a future on a fresh glommio executor.

use std::future::Future;

use glommio::{LocalExecutorBuilder, Placement};
use weir_storage::{Result, Scan};

/// Runs `f` on its own executor thread (2 MiB io memory: no CAP_IPC_LOCK here).
pub fn run<T: Send + 'static, F, Fut>(f: F) -> T
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    std::thread::spawn(move || {
        let ex = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(2 << 20)
            .make()
            .expect("executor");
        ex.run(f())
    })
    .join()
    .expect("executor thread")
}

/// Drains a scan into owned pairs.
pub async fn collect(mut s: Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    while let Some((k, v)) = s.next().await? {
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}

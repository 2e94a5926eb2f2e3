//! Ctrl-C and SIGTERM during a build. The first stops scheduling and cancels the work in
//! flight — every node body awaits through [`Interrupt::guard`], so a cancelled body's
//! future is dropped (its harness process killed, its port-forwards closed) — and the
//! build then tears down the stacks it stood up (unless `--keep-stacks`) and exits 130.
//! An interrupted node writes no record: its incomplete marker stays, so the next build
//! runs it again with the reason "interrupted". A second signal exits at once; records
//! are written atomically, so none is ever half written.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Result;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Interrupt {
    set: AtomicBool,
    notify: Notify,
}

/// The error a cancelled node body returns.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

impl Interrupt {
    /// Listens for SIGINT and SIGTERM on `rt` for the rest of the process.
    pub fn install(rt: &tokio::runtime::Runtime) -> Arc<Interrupt> {
        let it = Arc::new(Interrupt::default());
        // A closed stderr (`llmd build | head`) stops the build as Ctrl-C does.
        let on_closed = it.clone();
        crate::util::output::on_closed(move || on_closed.trigger());
        let me = it.clone();
        rt.spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else { return };
            let mut count = 0;
            loop {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                count += 1;
                if count > 1 {
                    say!("\nllmd: interrupted again: exiting now (the cache stays consistent; the next build resumes)");
                    std::process::exit(130);
                }
                say!("\nllmd: interrupted: stopping the work in flight and tearing down what this build stood up (Ctrl-C again exits at once)");
                me.trigger();
            }
        });
        it
    }

    /// Marks the build interrupted and wakes every guarded await.
    pub fn trigger(&self) {
        self.set.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::SeqCst)
    }

    /// Resolves once interrupted.
    pub async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_set() {
                return;
            }
            notified.await;
        }
    }

    /// `fut`, or [`Interrupted`] (dropping `fut`) when the build is interrupted first.
    pub async fn guard<F: Future>(&self, fut: F) -> Result<F::Output> {
        if self.is_set() {
            return Err(Interrupted.into());
        }
        tokio::select! {
            out = fut => Ok(out),
            () = self.wait() => Err(Interrupted.into()),
        }
    }
}

/// Whether an error is (or wraps) an interruption.
pub fn is_interrupted(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.is::<Interrupted>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guarded_future_is_cancelled_by_the_trigger() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let it = Arc::new(Interrupt::default());
        let ok = rt.block_on(it.guard(async { 5 }));
        assert_eq!(ok.unwrap(), 5);
        let t = it.clone();
        let r = rt.block_on(async move {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                t.trigger();
            });
            it.guard(tokio::time::sleep(std::time::Duration::from_secs(30))).await
        });
        let e = r.unwrap_err();
        assert!(is_interrupted(&e) && is_interrupted(&e.context("running run/a")));
    }
}

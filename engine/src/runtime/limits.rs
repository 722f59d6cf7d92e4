//! Process limits the runtime raises for itself.

use std::sync::Once;

/// Raises the soft limit on open files to the hard limit, once per process, before the first
/// job starts its executors.
///
/// Why: glommio 0.9 leaks one eventfd per executor (upstream issue DataDog/glommio#448, open in
/// its latest release), so a process that runs job after job — an embedding service, a
/// benchmark in one process — holds one more descriptor per shard of every job it ran. At the
/// usual soft limit of 1024 that fails after about 500 two-shard jobs; the hard limit (524288
/// under systemd's default) puts it out of reach of any realistic process. Go's runtime raises
/// the same limit at start-up for the same kind of reason. Failing to raise it is not an error:
/// jobs run as before, with a warning.
pub(crate) fn raise_open_files_limit() {
    static ONCE: Once = Once::new();
    ONCE.call_once(raise_to_hard_limit);
}

fn raise_to_hard_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open files limit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let (_, hard) = rlimit::Resource::NOFILE
            .get()
            .expect("the limit is readable");
        // Start from the common default (or below the hard limit, wherever that is), as a
        // fresh process under a default login would; other tests need far fewer descriptors.
        let low = hard.min(1024).saturating_sub(1).max(64);
        rlimit::Resource::NOFILE
            .set(low, hard)
            .expect("lowering the soft limit is always allowed");
        raise_to_hard_limit();
        let (soft, _) = rlimit::Resource::NOFILE
            .get()
            .expect("the limit is readable");
        assert_eq!(
            soft, hard,
            "the soft limit stayed at {soft} (from {low}), hard {hard}"
        );
    }
}

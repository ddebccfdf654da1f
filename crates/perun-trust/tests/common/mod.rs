//! What the trust service's suites share: the store they run on ([`store`]), an
//! in-process service whose clock the test moves ([`InProcess`]), and a relay the provider
//! runs between its worker and the service ([`relay`]), and the parties by name ([`People`]).

pub mod relay;
pub mod store;

use perun_seal::StakeholderKeys;

/// The parties of a suite, each found by name: `P` is the suite's enum of them.
pub struct People<P>(pub Vec<(P, StakeholderKeys)>);

impl<P> People<P> {
    /// Every party's keys, in the order they were made.
    pub fn iter(&self) -> impl Iterator<Item = &StakeholderKeys> {
        self.0.iter().map(|(_, k)| k)
    }
}

impl<P: PartialEq + std::fmt::Debug> std::ops::Index<P> for People<P> {
    type Output = StakeholderKeys;

    fn index(&self, who: P) -> &StakeholderKeys {
        self.0.iter().find(|(p, _)| *p == who).map(|(_, k)| k).unwrap_or_else(|| panic!("no party {who:?}"))
    }
}

/// A trust service in-process on loopback (the test kit's, on the store [`store::test_store`]
/// picks, in a folder of its own) whose clock the test moves.
pub struct InProcess {
    pub dir: tempfile::TempDir,
    pub clock: std::sync::Arc<std::sync::atomic::AtomicU64>,
    pub trust: std::sync::Arc<perun_trust::Trust<perun_trust::AnyStore>>,
    pub server: perun_trust::server::Running,
    pub anon: perun_client::Client,
}

impl InProcess {
    /// Starts it with its clock at `now`.
    pub fn start(now: u64) -> Self {
        use perun_trust::{Clock, TrustConfig};
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(now));
        let store = store::test_store(dir.path());
        let (trust, server, anon) = perun_testkit::InProcess::start(
            store,
            &dir.path().join("keys"),
            Clock::Manual(clock.clone()),
            TrustConfig::default(),
        )
        .unwrap()
        .into_parts();
        Self { dir, clock, trust, server, anon }
    }
}

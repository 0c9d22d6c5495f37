//! The actor's own logic, on a scripted driver (no engine, no server):
//! what it answers while long work is under way. Everything end to end
//! runs on real processes and containers in `tests/`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::*;
use crate::endpoint::Endpoint;
use crate::scaler::usage::Usage;
use crate::service::ResizeRequest;

const MIB: u64 = 1024 * 1024;

/// A driver that does what it is told: its server's working set is
/// whatever the test sets, and the limits it was given are recorded.
struct Scripted {
    working_set: Arc<AtomicU64>,
    limits: Arc<Mutex<Vec<Resources>>>,
}

impl Driver for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn start(&mut self) -> Result<Endpoint, DriverError> {
        Ok(Endpoint::Unix("/nonexistent/scripted.sock".into()))
    }
    fn freeze(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
    fn thaw(&mut self) -> Result<Endpoint, DriverError> {
        self.start()
    }
    fn stop(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
    fn resize(&mut self, resources: Resources) -> Result<(), DriverError> {
        self.limits.lock().unwrap().push(resources);
        Ok(())
    }
    fn usage(&mut self) -> Result<Usage, DriverError> {
        Ok(Usage {
            cpu_nanos: 0,
            memory_bytes: self.working_set.load(Ordering::Acquire),
            working_set_bytes: self.working_set.load(Ordering::Acquire),
            cpu_limit: None,
            memory_limit_bytes: None,
        })
    }
    fn admin_access(&self) -> Option<crate::scaler::driver::AdminAccess> {
        None
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
    fn destroy(&mut self) -> Result<(), DriverError> {
        Ok(())
    }
}

fn ask(service: &Service, action: AdminAction) -> mpsc::Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    assert!(service.request(Request::Admin(action, tx)));
    rx
}

#[test]
fn a_shrink_waiting_for_memory_keeps_the_actor_answering() {
    let (requests, inbox) = mpsc::channel();
    let service = Arc::new(Service::new(
        0,
        "scripted",
        "scripted",
        State::Active,
        Some(Endpoint::Unix("/nonexistent/scripted.sock".into())),
        Duration::from_secs(1),
        Duration::from_secs(1),
        1,
        Arc::new(event_listener::Event::new()),
        Some(requests),
    ));
    let working_set = Arc::new(AtomicU64::new(900 * MIB));
    let limits = Arc::new(Mutex::new(Vec::new()));
    let driver = Scripted {
        working_set: Arc::clone(&working_set),
        limits: Arc::clone(&limits),
    };
    let start = Resources {
        cpus: 1.0,
        memory_mib: 1024,
    };
    let plan = Plan {
        timers: Timers {
            suspend_after: None,
            park_after: None,
            drain_timeout: Duration::from_secs(1),
            buffer_pool_bytes: 512 * MIB,
            suspended_buffer_pool_bytes: 16 * MIB,
        },
        sizing: Sizing {
            start,
            autoscale: None,
            pool: PoolSizing {
                share: 0.5,
                reload_after_grow: true,
            },
        },
        startup_sql: StartupSql::default(),
        from_warm: false,
        temporary: false,
    };
    let actor = spawn(
        Arc::clone(&service),
        Box::new(driver),
        plan,
        Arc::new(Registry::default()),
        inbox,
    )
    .expect("actor thread");

    // Down to 512 MiB while the server still holds 900: the limit waits.
    let shrink = ask(
        &service,
        AdminAction::Resize(ResizeRequest {
            memory_mib: Some(512),
            ..ResizeRequest::default()
        }),
    );
    // Meanwhile the actor answers at once, refusing what would collide.
    let suspend = ask(&service, AdminAction::Suspend);
    let answer = suspend
        .recv_timeout(Duration::from_secs(2))
        .expect("the actor answered during the shrink");
    assert_eq!(answer, Err("a resize is under way".to_string()));
    assert!(
        matches!(shrink.try_recv(), Err(mpsc::TryRecvError::Empty)),
        "the shrink ended before the memory came back"
    );
    assert!(
        limits.lock().unwrap().is_empty(),
        "the limit came down too early"
    );

    // The server gives its memory back: the limit comes down, and the
    // operator who asked hears so.
    working_set.store(200 * MIB, Ordering::Release);
    let done = shrink
        .recv_timeout(Duration::from_secs(5))
        .expect("the shrink finished");
    assert_eq!(done, Ok(()));
    assert_eq!(
        limits.lock().unwrap().last().copied(),
        Some(Resources {
            cpus: 1.0,
            memory_mib: 512
        })
    );
    let view = service.scaling.lock().unwrap();
    assert_eq!(view.resources.map(|r| r.memory_mib), Some(512));
    drop(view);
    assert!(service.request(Request::Shutdown));
    actor.join().expect("actor ends");
}

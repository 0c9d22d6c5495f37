//! What tests of real containers share: the docker CLI, the images they
//! need, unique names, and the `TORPOR_REQUIRE_DOCKER` rule.
//!
//! The tests run wherever a Docker engine answers. Without an engine or
//! the images they pass with a note on stderr, unless
//! `TORPOR_REQUIRE_DOCKER=1` (CI sets it): then they fail, saying how to
//! build the images. `TORPOR_MARIADB_IMAGE` and `TORPOR_IMAGE` name other
//! images.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// How to get what a skipped or failed container test was missing.
pub const BUILD_HINT: &str = "build the images with docker/mariadb/build.sh and \
     docker/torpor/build.sh (.ci/run does), or unset TORPOR_REQUIRE_DOCKER \
     to let these tests pass without Docker";

/// The MariaDB image (docker/mariadb/build.sh).
pub fn mariadb_image() -> String {
    std::env::var("TORPOR_MARIADB_IMAGE").unwrap_or_else(|_| "torpor/mariadb:10.11".into())
}

/// The Torpor image (docker/torpor/build.sh).
pub fn torpor_image() -> String {
    std::env::var("TORPOR_IMAGE").unwrap_or_else(|_| "torpor/torpor:dev".into())
}

/// Runs the docker CLI; `None` when it cannot even be started.
pub fn docker(args: &[&str]) -> Option<Output> {
    Command::new("docker").args(args).output().ok()
}

/// Runs the docker CLI and returns its stdout, or fails the test with
/// what docker said.
pub fn docker_ok(args: &[&str]) -> String {
    let output = docker(args).unwrap_or_else(|| panic!("cannot run docker {args:?}"));
    assert!(
        output.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// Whether the environment asks for container tests to fail rather than
/// pass without Docker.
pub fn docker_required() -> bool {
    std::env::var("TORPOR_REQUIRE_DOCKER").is_ok_and(|v| v == "1")
}

/// `Some(())` when the engine answers and every one of `images` exists;
/// otherwise `None` with a note on stderr (the test then returns), or a
/// failure under `TORPOR_REQUIRE_DOCKER=1`.
#[must_use]
pub fn images_ready(images: &[String]) -> Option<()> {
    let why = match docker(&["version", "--format", "{{.Server.Version}}"]) {
        None => Some("the docker CLI is not installed".to_string()),
        Some(out) if !out.status.success() => Some(format!(
            "the Docker engine does not answer: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Some(_) => images
            .iter()
            .find(|image| {
                !docker(&["image", "inspect", image]).is_some_and(|out| out.status.success())
            })
            .map(|image| format!("the image {image} is missing")),
    };
    match why {
        None => Some(()),
        Some(why) if docker_required() => {
            panic!("TORPOR_REQUIRE_DOCKER=1 but {why}: {BUILD_HINT}")
        }
        Some(why) => {
            eprintln!("skipped: {why} ({BUILD_HINT})");
            None
        }
    }
}

/// A name no other test, run or test binary uses, starting with
/// `torpor-test-` so leftovers are easy to find.
pub fn unique_name(what: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "torpor-test-{}-{}-{nanos:08x}-{what}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The names of the containers (all states) of Torpor's service `service`.
pub fn containers_of(service: &str) -> Vec<String> {
    docker_ok(&[
        "ps",
        "-a",
        "--filter",
        &format!("label=org.torpor.service={service}"),
        "--format",
        "{{.Names}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// The names of the volumes of Torpor's service `service`.
pub fn volumes_of(service: &str) -> Vec<String> {
    docker_ok(&[
        "volume",
        "ls",
        "--filter",
        &format!("label=org.torpor.service={service}"),
        "--format",
        "{{.Name}}",
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Removes a kept (not temporary) service's containers and volumes when
/// the test ends, however it ends.
pub struct RemoveOnDrop(pub String);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for container in containers_of(&self.0) {
            let _ = docker(&["rm", "-f", "-v", &container]);
        }
        for volume in volumes_of(&self.0) {
            let _ = docker(&["volume", "rm", "-f", &volume]);
        }
    }
}

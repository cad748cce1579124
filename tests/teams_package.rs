//! `waiver teams-package`: the zip a Teams admin uploads, and the manifest in it
//! type-checked against Microsoft's published `TeamsAppManifest` types
//! (`@microsoft/teams-manifest`, with `tsc --noEmit`; tests/node holds them).

mod common;

use std::io::Read;
use std::path::Path;
use std::process::Command;

const APP_ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

fn waiver() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_waiver"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// Type-checks `manifest` (JSON) as a `TeamsAppManifest` with tsc, strictly: an
/// unknown property, a wrong type or a scope outside the allowed ones fails.
fn type_check(manifest: &str) {
    let node = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let tsc = node.join("node_modules/.bin/tsc");
    if !tsc.exists() {
        let required = std::env::var("WAIVER_REQUIRE_NODE").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "WAIVER_REQUIRE_NODE=1 but tests/node has no node_modules: run `npm ci` there"
        );
        eprintln!("\n!!! SKIPPING the manifest type check: run `npm ci` in tests/node\n");
        return;
    }
    // A file inside tests/node, so that the types resolve from its node_modules.
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = node.join(format!(".check-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("manifest.ts");
    std::fs::write(
        &file,
        format!(
            "import {{ TeamsAppManifest }} from \"@microsoft/teams-manifest\";\n\
             export const manifest: TeamsAppManifest = {manifest};\n"
        ),
    )
    .unwrap();
    let out = Command::new(&tsc)
        .args([
            "--noEmit", "--strict", "--target", "es2020", "--module", "commonjs",
        ])
        .args(["--moduleResolution", "node", "--skipLibCheck"])
        .arg(&file)
        .output()
        .expect("run tsc");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "the manifest does not type-check as a TeamsAppManifest:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_package_holds_the_manifest_and_both_icons_and_type_checks() {
    let dir = common::TempDir::new();
    let zip = dir.path.join("waiver-teams.zip");
    let out = waiver()
        .args([
            "teams-package",
            "--app-id",
            APP_ID,
            "--host",
            "waiver.example.com",
            "-o",
        ])
        .arg(&zip)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&zip).unwrap()).unwrap();
    let mut names: Vec<String> = archive
        .file_names()
        .map(|n| n.expect("a readable name").into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["color.png", "manifest.json", "outline.png"]);
    let mut manifest = String::new();
    archive
        .by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    let m: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(m["id"], APP_ID);
    assert_eq!(m["bots"][0]["botId"], APP_ID);
    assert_eq!(m["validDomains"], serde_json::json!(["waiver.example.com"]));
    let commands: Vec<&str> = m["bots"][0]["commandLists"][0]["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert!(commands.contains(&"ai-exception") && commands.contains(&"ai-exception status"));
    // The icons are the sizes Teams asks for.
    for (name, size) in [("color.png", 192u32), ("outline.png", 32)] {
        let mut png = Vec::new();
        archive
            .by_name(name)
            .unwrap()
            .read_to_end(&mut png)
            .unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{name}");
        let w = u32::from_be_bytes(png[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(png[20..24].try_into().unwrap());
        assert_eq!((w, h), (size, size), "{name}");
    }
    type_check(&manifest);
    // The template in the repository, too.
    type_check(include_str!("../manifests/teams/manifest.json"));
}

#[test]
fn the_type_check_catches_a_broken_manifest() {
    let broken = include_str!("../manifests/teams/manifest.json").replace(
        "\"scopes\": [\"personal\", \"team\"],",
        "\"scopes\": [\"personal\", \"everywhere\"],",
    );
    assert_ne!(broken, include_str!("../manifests/teams/manifest.json"));
    let result = std::panic::catch_unwind(|| type_check(&broken));
    let tsc = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules/.bin/tsc");
    if tsc.exists() {
        assert!(result.is_err(), "an unknown scope must not type-check");
    }
}

#[test]
fn bad_ids_and_hosts_are_refused_with_a_clear_error() {
    for (id, host, says) in [
        ("nope", "waiver.example.com", "is not a Microsoft App ID"),
        (APP_ID, "https://waiver.example.com", "is not a host name"),
    ] {
        let out = waiver()
            .args([
                "teams-package",
                "--app-id",
                id,
                "--host",
                host,
                "-o",
                "/tmp/unused.zip",
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error: ") && err.contains(says), "{err}");
    }
}

//! `waiver teams-package`: the zip a Teams admin uploads — `manifests/teams/manifest.json`
//! with the bot's app id and the host filled in, and its two icons.

use std::io::Write;

use anyhow::{Context, bail};

const MANIFEST: &str = include_str!("../manifests/teams/manifest.json");
const COLOR: &[u8] = include_bytes!("../manifests/teams/color.png");
const OUTLINE: &[u8] = include_bytes!("../manifests/teams/outline.png");

/// The manifest for app `app_id` served at `host` (a bare host name).
pub fn manifest(app_id: &str, host: &str) -> anyhow::Result<String> {
    let id_ok = app_id.len() == 36
        && app_id.chars().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        });
    if !id_ok {
        bail!(
            "--app-id {app_id:?} is not a Microsoft App ID (a GUID like 00000000-0000-0000-0000-000000000000)"
        );
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && !host.starts_with(['.', '-']);
    if !host_ok {
        bail!("--host {host:?} is not a host name like waiver.example.com (no scheme, no path)");
    }
    Ok(MANIFEST
        .replace("{{TEAMS_APP_ID}}", app_id)
        .replace("{{HOST}}", host))
}

/// The package: manifest.json, color.png and outline.png at the zip's root.
pub fn package(app_id: &str, host: &str) -> anyhow::Result<Vec<u8>> {
    let manifest = manifest(app_id, host)?;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("manifest.json", manifest.as_bytes()),
        ("color.png", COLOR),
        ("outline.png", OUTLINE),
    ] {
        zip.start_file(name, options)
            .with_context(|| format!("cannot add {name} to the package"))?;
        zip.write_all(bytes)?;
    }
    Ok(zip
        .finish()
        .context("cannot finish the package")?
        .into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_names_the_bot_and_the_host() {
        let m: serde_json::Value = serde_json::from_str(
            &manifest("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "waiver.example.com").unwrap(),
        )
        .unwrap();
        assert_eq!(m["id"], "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
        assert_eq!(m["bots"][0]["botId"], m["id"]);
        assert_eq!(m["validDomains"][0], "waiver.example.com");
        assert!(!m.to_string().contains("{{"));
    }

    #[test]
    fn bad_ids_and_hosts_are_refused() {
        assert!(manifest("not-a-guid", "waiver.example.com").is_err());
        assert!(
            manifest(
                "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                "https://waiver.example.com/"
            )
            .is_err()
        );
        assert!(manifest("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "").is_err());
    }
}

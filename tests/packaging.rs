//! The packaging against the binary: the `Dockerfile` and `manifests/kubernetes` may
//! name only variables Waiver reads (`waiver::config::VARIABLES`), probe only routes
//! the real server answers 200 on, agree on one port, mount the governance file where
//! `WAIVER_GOVERNANCE` says, reference only Secret keys the example Secret has, and
//! health-check with a `waiver` subcommand that works.
//!
//! No image is built and no cluster is reached: the files are read as text. The YAML
//! is read line by line ([`Yaml`]), which is enough for the block style these
//! manifests are written in; a manifest in another style makes a test fail to find
//! what it looks for, never pass without looking.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use waiver::config::{Config, VARIABLES};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn kube_dir() -> PathBuf {
    root().join("manifests/kubernetes")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Besides [`VARIABLES`], the one variable the binary reads (tracing's filter).
const ALSO_READ: [&str; 1] = ["RUST_LOG"];

// ── The Dockerfile ───────────────────────────────────────────────────────────────────

/// The Dockerfile's instructions, continuation lines joined and comments left out.
struct Dockerfile {
    instructions: Vec<(String, String)>,
}

impl Dockerfile {
    fn load() -> Self {
        let mut instructions = Vec::new();
        let mut logical = String::new();
        for line in read(&root().join("Dockerfile")).lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_suffix('\\') {
                logical.push_str(rest);
                logical.push(' ');
                continue;
            }
            logical.push_str(line);
            let (keyword, args) = logical.split_once(' ').unwrap_or((&logical, ""));
            instructions.push((keyword.to_uppercase(), args.trim().to_string()));
            logical.clear();
        }
        Self { instructions }
    }

    /// The instructions of the last stage: what the image runs.
    fn runtime(&self) -> &[(String, String)] {
        let last_from = self
            .instructions
            .iter()
            .rposition(|(k, _)| k == "FROM")
            .expect("a FROM");
        &self.instructions[last_from..]
    }

    /// The arguments of every `keyword` instruction of the runtime stage.
    fn all(&self, keyword: &str) -> Vec<&str> {
        self.runtime()
            .iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, a)| a.as_str())
            .collect()
    }

    /// The one `keyword` instruction of the runtime stage.
    fn one(&self, keyword: &str) -> &str {
        match self.all(keyword)[..] {
            [args] => args,
            ref found => panic!("the runtime stage needs one {keyword}, has {found:?}"),
        }
    }

    /// The runtime stage's `ENV KEY=value` settings.
    fn env(&self) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        for args in self.all("ENV") {
            for pair in args.split_whitespace() {
                let (key, value) = pair
                    .split_once('=')
                    .unwrap_or_else(|| panic!("write ENV as KEY=value, not {args:?}"));
                env.insert(key.to_string(), value.trim_matches('"').to_string());
            }
        }
        env
    }

    /// The runtime stage's `COPY`s: (flags, sources, destination).
    fn copies(&self) -> Vec<(Vec<String>, Vec<String>, String)> {
        self.all("COPY")
            .into_iter()
            .map(|args| {
                let (flags, mut paths): (Vec<String>, Vec<String>) = args
                    .split_whitespace()
                    .map(str::to_string)
                    .partition(|w| w.starts_with("--"));
                let dest = paths.pop().expect("a COPY destination");
                (flags, paths, dest)
            })
            .collect()
    }

    /// The `RUN` of the builder that compiles Waiver.
    fn build(&self) -> &str {
        self.instructions
            .iter()
            .find(|(k, a)| k == "RUN" && a.contains("cargo build"))
            .map(|(_, a)| a.as_str())
            .expect("a RUN with cargo build")
    }

    /// `HEALTHCHECK [OPTIONS] CMD [...]`: the options and the command.
    fn healthcheck(&self) -> (Vec<String>, Vec<String>) {
        let args = self.one("HEALTHCHECK");
        let (options, command) = args.split_once("CMD ").expect("HEALTHCHECK ... CMD [...]");
        let options = options.split_whitespace().map(str::to_string).collect();
        (options, exec_form(command))
    }
}

/// An exec-form argument list, `["a", "b"]`.
fn exec_form(args: &str) -> Vec<String> {
    serde_json::from_str(args.trim())
        .unwrap_or_else(|e| panic!("{args:?} is not an exec-form list: {e}"))
}

/// The port of a `host:port` listen address.
fn port_of(listen: &str) -> u16 {
    listen
        .parse::<std::net::SocketAddr>()
        .unwrap_or_else(|e| panic!("{listen:?} is not an address: {e}"))
        .port()
}

// ── YAML, line by line ───────────────────────────────────────────────────────────────

/// One non-blank, non-comment line: `key: value`, `key:`, `- key: value` or `- value`.
struct Line {
    indent: usize,
    item: bool,
    key: String,
    value: String,
}

/// A block-style YAML file as lines with their indentation. Blocks are found by
/// indentation, list items by their `- `.
struct Yaml {
    name: String,
    lines: Vec<Line>,
}

impl Yaml {
    fn load(file: &str) -> Self {
        Self::parse(file, &read(&kube_dir().join(file)))
    }

    fn parse(name: &str, text: &str) -> Self {
        let mut lines = Vec::new();
        for raw in text.lines() {
            let content = raw.split(" #").next().unwrap_or_default();
            let trimmed = content.trim_start();
            if trimmed.trim().is_empty() || trimmed.starts_with('#') {
                continue;
            }
            assert!(trimmed != "---", "{name}: one document per file");
            let indent = content.len() - trimmed.len();
            let (item, rest) = match trimmed.strip_prefix("- ") {
                Some(rest) => (true, rest),
                None => (false, trimmed),
            };
            let rest = rest.trim_end();
            let (key, value) = match rest.split_once(": ") {
                Some((k, v)) if !k.contains(' ') => (k, v),
                _ => match rest.strip_suffix(':') {
                    Some(k) => (k, ""),
                    None => ("", rest),
                },
            };
            let value = value.trim();
            let unquoted = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            lines.push(Line {
                indent,
                item,
                key: key.to_string(),
                value: unquoted.to_string(),
            });
        }
        Self {
            name: name.to_string(),
            lines,
        }
    }

    /// Where line `i`'s key starts (after a `- `).
    fn col(&self, i: usize) -> usize {
        let l = &self.lines[i];
        l.indent + if l.item { 2 } else { 0 }
    }

    fn all(&self) -> Range<usize> {
        0..self.lines.len()
    }

    /// The lines nested under line `i`'s key.
    fn block(&self, i: usize) -> Range<usize> {
        let end = (i + 1..self.lines.len())
            .find(|&j| self.lines[j].indent <= self.col(i))
            .unwrap_or(self.lines.len());
        i + 1..end
    }

    /// The line of `key` directly in `within` (a block, or a list item).
    fn field(&self, within: Range<usize>, key: &str) -> Option<usize> {
        let col = self.col(within.start);
        within
            .clone()
            .find(|&j| self.col(j) == col && self.lines[j].key == key)
    }

    /// Follows `path` from `within`: the line of its last key.
    fn at(&self, within: Range<usize>, path: &[&str]) -> usize {
        let mut within = within;
        let mut line = None;
        for key in path {
            let i = self
                .field(within.clone(), key)
                .unwrap_or_else(|| panic!("{}: no {}", self.name, path.join(".")));
            line = Some(i);
            within = self.block(i);
        }
        line.expect("a path")
    }

    /// The value at `path`.
    fn get(&self, within: Range<usize>, path: &[&str]) -> &str {
        &self.lines[self.at(within, path)].value
    }

    /// The items of the list under line `i`.
    fn items(&self, i: usize) -> Vec<Range<usize>> {
        let block = self.block(i);
        let starts: Vec<usize> = block
            .clone()
            .filter(|&j| self.lines[j].item && self.lines[j].indent == self.lines[i].indent + 2)
            .collect();
        starts
            .iter()
            .enumerate()
            .map(|(n, &s)| s..starts.get(n + 1).copied().unwrap_or(block.end))
            .collect()
    }

    /// The values of a list of scalars (`- a`) or of one key of each item.
    fn values(&self, i: usize, key: &str) -> Vec<String> {
        self.items(i)
            .into_iter()
            .filter_map(|item| self.field(item, key))
            .map(|j| self.lines[j].value.clone())
            .collect()
    }

    /// The keys directly under line `i` (a mapping such as `stringData`).
    fn keys(&self, i: usize) -> BTreeSet<String> {
        let block = self.block(i);
        block
            .clone()
            .filter(|&j| self.col(j) == self.col(block.start))
            .map(|j| self.lines[j].key.clone())
            .collect()
    }
}

/// The Deployment's (only) container.
fn container(deploy: &Yaml) -> Range<usize> {
    let containers = deploy.at(deploy.all(), &["spec", "template", "spec", "containers"]);
    match &deploy.items(containers)[..] {
        [one] => one.clone(),
        other => panic!(
            "deployment.yaml: one container expected, {} found",
            other.len()
        ),
    }
}

/// One `env` entry of the container.
#[derive(Debug)]
enum EnvValue {
    Literal(String),
    /// From the Secret `name`, key `key`.
    Secret {
        name: String,
        key: String,
        optional: bool,
    },
}

fn deployment_env(deploy: &Yaml) -> BTreeMap<String, EnvValue> {
    let env = deploy.at(container(deploy), &["env"]);
    deploy
        .items(env)
        .into_iter()
        .map(|item| {
            let name = deploy.get(item.clone(), &["name"]).to_string();
            let value = match deploy.field(item.clone(), "value") {
                Some(j) => EnvValue::Literal(deploy.lines[j].value.clone()),
                None => {
                    let r = deploy.at(item, &["valueFrom", "secretKeyRef"]);
                    let r = deploy.block(r);
                    EnvValue::Secret {
                        name: deploy.get(r.clone(), &["name"]).to_string(),
                        key: deploy.get(r.clone(), &["key"]).to_string(),
                        optional: deploy
                            .field(r.clone(), "optional")
                            .is_some_and(|j| deploy.lines[j].value == "true"),
                    }
                }
            };
            (name, value)
        })
        .collect()
}

/// The example Secret: its name and its `stringData`.
fn example_secret() -> (String, BTreeMap<String, String>) {
    let secret = Yaml::load("secret.example.yaml");
    assert_eq!(secret.get(secret.all(), &["kind"]), "Secret");
    let name = secret.get(secret.all(), &["metadata", "name"]).to_string();
    let data = secret.at(secret.all(), &["stringData"]);
    let values = secret
        .keys(data)
        .into_iter()
        .map(|k| {
            let v = secret.get(secret.block(data), &[&k]).to_string();
            (k, v)
        })
        .collect();
    (name, values)
}

/// The configuration a pod gets: the Deployment's literal values, and the example
/// Secret's placeholders for what it takes from the Secret.
fn pod_environment() -> BTreeMap<String, String> {
    let (_, secret) = example_secret();
    deployment_env(&Yaml::load("deployment.yaml"))
        .into_iter()
        .filter_map(|(name, value)| match value {
            EnvValue::Literal(v) => Some((name, v)),
            EnvValue::Secret { key, .. } => secret.get(&key).map(|v| (name, v.clone())),
        })
        .collect()
}

/// Every `WAIVER_…`, `SLACK_…` or `TEAMS_…` word in `text`, comments included.
fn variable_words(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|w| {
            ["WAIVER_", "SLACK_", "TEAMS_"]
                .iter()
                .any(|p| w.starts_with(p))
        })
        .map(str::to_string)
        .collect()
}

fn packaging_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("Dockerfile")];
    for entry in std::fs::read_dir(kube_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

// ── Variables ────────────────────────────────────────────────────────────────────────

#[test]
fn every_variable_the_packaging_names_is_one_the_binary_reads() {
    let known: BTreeSet<&str> = VARIABLES.iter().chain(&ALSO_READ).copied().collect();
    for file in packaging_files() {
        for word in variable_words(&read(&file)) {
            assert!(
                known.contains(word.as_str()),
                "{} names {word}, which Waiver does not read (waiver::config::VARIABLES)",
                file.display()
            );
        }
    }
    let docker = Dockerfile::load();
    for key in docker.env().keys() {
        assert!(known.contains(key.as_str()), "Dockerfile: ENV {key}");
    }
    let deploy = Yaml::load("deployment.yaml");
    for name in deployment_env(&deploy).keys() {
        assert!(known.contains(name.as_str()), "deployment.yaml: env {name}");
    }
    for key in example_secret().1.keys() {
        assert!(known.contains(key.as_str()), "secret.example.yaml: {key}");
    }
}

#[test]
fn the_image_and_the_pods_are_configurations_the_binary_accepts() {
    let docker = Dockerfile::load().env();
    let image = Config::from_lookup(|k| docker.get(k).cloned())
        .unwrap_or_else(|e| panic!("the Dockerfile's ENV: {e}"));
    assert!(
        image.database_url.starts_with("sqlite://"),
        "{}",
        image.database_url
    );

    let pod = pod_environment();
    let config = Config::from_lookup(|k| pod.get(k).cloned())
        .unwrap_or_else(|e| panic!("deployment.yaml with secret.example.yaml: {e}"));
    assert!(
        config.database_url.starts_with("postgres://"),
        "the replicas share one PostgreSQL: {}",
        config.database_url
    );
    assert!(config.slack.is_some() && config.teams.is_some());
    assert_eq!(
        pod.get("WAIVER_LOG_FORMAT").map(String::as_str),
        Some("json")
    );
    assert_eq!(config.log_format, waiver::config::LogFormat::Json);
    assert_eq!(
        config.governance, image.governance,
        "the ConfigMap is mounted where the image keeps its governance file"
    );
}

// ── Ports, mounts, Secret keys ───────────────────────────────────────────────────────

#[test]
fn the_container_port_the_service_and_the_image_agree() {
    let docker = Dockerfile::load();
    let listen = docker.env()["WAIVER_LISTEN"].clone();
    let port = port_of(&listen);
    assert!(
        listen
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .ip()
            .is_unspecified(),
        "the image listens on every interface: {listen}"
    );
    assert_eq!(docker.one("EXPOSE"), port.to_string(), "EXPOSE");

    let deploy = Yaml::load("deployment.yaml");
    let c = container(&deploy);
    let ports = deploy.items(deploy.at(c.clone(), &["ports"]));
    let [http] = &ports[..] else {
        panic!("one container port")
    };
    let container_port: u16 = deploy
        .get(http.clone(), &["containerPort"])
        .parse()
        .unwrap();
    let port_name = deploy.get(http.clone(), &["name"]).to_string();
    assert_eq!(
        container_port, port,
        "containerPort = the image's WAIVER_LISTEN port"
    );
    if let EnvValue::Literal(l) = &deployment_env(&deploy)["WAIVER_LISTEN"] {
        assert_eq!(port_of(l), port, "the Deployment's WAIVER_LISTEN");
    }

    let service = Yaml::load("service.yaml");
    let ports = service.items(service.at(service.all(), &["spec", "ports"]));
    for p in ports {
        let target = service.get(p, &["targetPort"]);
        assert!(
            target == port.to_string() || target == port_name,
            "service.yaml: targetPort {target} is not the container's port {port}"
        );
    }
    // The Service and the budget select the Deployment's pods.
    let labels = deploy.keys(deploy.at(deploy.all(), &["spec", "template", "metadata", "labels"]));
    let selected = service.keys(service.at(service.all(), &["spec", "selector"]));
    assert!(selected.is_subset(&labels), "service selector {selected:?}");
    let pdb = Yaml::load("pdb.yaml");
    assert_eq!(pdb.get(pdb.all(), &["kind"]), "PodDisruptionBudget");
    let selected = pdb.keys(pdb.at(pdb.all(), &["spec", "selector", "matchLabels"]));
    assert!(selected.is_subset(&labels), "pdb selector {selected:?}");

    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let p = deploy.get(c.clone(), &[probe, "httpGet", "port"]);
        assert!(
            p == port_name || p == port.to_string(),
            "{probe} probes port {p}, not the container's"
        );
    }
}

/// The generated ConfigMaps: (name, [(key, source file)]).
fn config_maps() -> Vec<(String, Vec<(String, PathBuf)>)> {
    let k = Yaml::load("kustomization.yaml");
    let generator = k.at(k.all(), &["configMapGenerator"]);
    k.items(generator)
        .into_iter()
        .map(|item| {
            let name = k.get(item.clone(), &["name"]).to_string();
            let files = k
                .values(k.at(item, &["files"]), "")
                .into_iter()
                .map(|entry| {
                    let (key, file) = match entry.split_once('=') {
                        Some((key, file)) => (key.to_string(), file.to_string()),
                        None => (
                            Path::new(&entry)
                                .file_name()
                                .unwrap()
                                .to_string_lossy()
                                .into(),
                            entry.clone(),
                        ),
                    };
                    (key, kube_dir().join(file))
                })
                .collect();
            (name, files)
        })
        .collect()
}

#[test]
fn the_governance_config_map_is_mounted_where_waiver_governance_points() {
    let deploy = Yaml::load("deployment.yaml");
    let c = container(&deploy);
    let EnvValue::Literal(wanted) = &deployment_env(&deploy)["WAIVER_GOVERNANCE"] else {
        panic!("WAIVER_GOVERNANCE is a literal path")
    };
    let wanted = Path::new(wanted);
    let volumes = deploy.at(deploy.all(), &["spec", "template", "spec", "volumes"]);
    let maps = config_maps();
    let mut found = None;
    for mount in deploy.items(deploy.at(c, &["volumeMounts"])) {
        let dir = Path::new(deploy.get(mount.clone(), &["mountPath"]));
        let Ok(file) = wanted.strip_prefix(dir) else {
            continue;
        };
        let volume = deploy.get(mount.clone(), &["name"]);
        assert_eq!(
            deploy.get(mount.clone(), &["readOnly"]),
            "true",
            "the governance mount is read-only"
        );
        let volume = deploy
            .items(volumes)
            .into_iter()
            .find(|v| deploy.get(v.clone(), &["name"]) == volume)
            .unwrap_or_else(|| panic!("no volume {volume}"));
        let map = deploy.get(volume, &["configMap", "name"]);
        let (_, files) = maps
            .iter()
            .find(|(name, _)| name == map)
            .unwrap_or_else(|| panic!("{map} is not generated by kustomization.yaml"));
        let source = files
            .iter()
            .find(|(key, _)| Path::new(key) == file)
            .map(|(_, source)| source.clone())
            .unwrap_or_else(|| panic!("{map} has no key {}", file.display()));
        found = Some(source);
    }
    let source = found.unwrap_or_else(|| {
        panic!(
            "no volume is mounted where WAIVER_GOVERNANCE={} points",
            wanted.display()
        )
    });
    if let Err(e) = waiver::governance::load(&source) {
        panic!("{}: {e}", source.display());
    }
    // kustomize reads no file outside its directory, so the manifests carry a copy of
    // the shipped example; it must not drift from the original.
    let (copy, shipped) = (
        read(&source),
        read(&root().join("manifests/governance.toml")),
    );
    if copy != shipped {
        let same = copy
            .lines()
            .zip(shipped.lines())
            .take_while(|(a, b)| a == b)
            .count();
        panic!(
            "{} differs from manifests/governance.toml from line {}: in this repository it \
             is a copy of the shipped example (copy it again)",
            source.display(),
            same + 1
        );
    }
}

#[test]
fn every_secret_key_the_deployment_reads_is_in_the_example_secret() {
    let (secret_name, keys) = example_secret();
    let mut required = Vec::new();
    for (var, value) in deployment_env(&Yaml::load("deployment.yaml")) {
        if let EnvValue::Secret {
            name,
            key,
            optional,
        } = value
        {
            assert_eq!(name, secret_name, "{var} reads Secret {name}");
            assert!(
                keys.contains_key(&key),
                "secret.example.yaml has no {key} ({var})"
            );
            if !optional {
                required.push(var);
            }
        }
    }
    assert_eq!(
        required,
        ["WAIVER_DATABASE_URL"],
        "the keys every Secret must have"
    );
    let k = Yaml::load("kustomization.yaml");
    let resources = k.values(k.at(k.all(), &["resources"]), "");
    assert!(
        !resources.iter().any(|r| r.contains("secret")),
        "the example Secret's placeholders are never applied: {resources:?}"
    );
    for r in resources {
        assert!(kube_dir().join(&r).exists(), "kustomization.yaml lists {r}");
    }
}

// ── The image and the pods run locked down ───────────────────────────────────────────

#[test]
fn the_image_runs_the_release_binary_as_nonroot_with_its_data_on_a_volume() {
    let docker = Dockerfile::load();
    let build = docker.build();
    for flag in ["--release", "--locked", "--no-default-features"] {
        assert!(build.contains(flag), "cargo build {flag}: {build}");
    }
    for cache in ["target=/usr/local/cargo/registry", "target=/src/target"] {
        assert!(
            build.contains(&format!("--mount=type=cache,{cache}")),
            "cache mount {cache}"
        );
    }
    let entrypoint = exec_form(docker.one("ENTRYPOINT"));
    assert_eq!(entrypoint, ["/usr/local/bin/waiver"]);
    let copies = docker.copies();
    assert!(
        copies
            .iter()
            .any(|(flags, _, dest)| flags.contains(&"--from=builder".into())
                && *dest == entrypoint[0]),
        "the binary is copied from the builder to {}",
        entrypoint[0]
    );
    assert!(
        docker
            .one("FROM")
            .starts_with("gcr.io/distroless/cc-debian12:nonroot"),
        "runtime image"
    );
    let user = docker.one("USER");
    assert_eq!(user, "65532:65532", "numeric, so runAsNonRoot can check it");

    let env = docker.env();
    let db = env["WAIVER_DATABASE_URL"]
        .strip_prefix("sqlite://")
        .unwrap();
    let dir = Path::new(db)
        .parent()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        exec_form(docker.one("VOLUME")),
        std::slice::from_ref(&dir),
        "the SQLite directory"
    );
    assert!(
        copies
            .iter()
            .any(|(flags, _, dest)| *dest == dir && flags.contains(&format!("--chown={user}"))),
        "{dir} exists in the image, owned by {user}"
    );
    let governance = copies
        .iter()
        .find(|(_, _, dest)| *dest == env["WAIVER_GOVERNANCE"])
        .unwrap_or_else(|| panic!("nothing is copied to WAIVER_GOVERNANCE"));
    for source in &governance.1 {
        waiver::governance::load(&root().join(source)).unwrap();
    }
    // `CMD ["serve"]` and the Deployment's args are subcommands of the binary.
    let deploy = Yaml::load("deployment.yaml");
    let args = exec_form(deploy.get(container(&deploy), &["args"]));
    for command in [exec_form(docker.one("CMD")), args] {
        let status = Command::new(env!("CARGO_BIN_EXE_waiver"))
            .args(&command)
            .arg("--help")
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "waiver {command:?} is not a command"
        );
    }
}

#[test]
fn the_pods_run_locked_down_and_shut_down_gracefully() {
    let deploy = Yaml::load("deployment.yaml");
    let all = deploy.all();
    assert_eq!(deploy.get(all.clone(), &["spec", "replicas"]), "3");
    assert_eq!(
        deploy.get(all.clone(), &["spec", "strategy", "type"]),
        "RollingUpdate"
    );
    let pod = deploy.block(deploy.at(all.clone(), &["spec", "template", "spec"]));
    assert_eq!(
        deploy.get(pod.clone(), &["securityContext", "runAsNonRoot"]),
        "true"
    );
    let uid = deploy.get(pod.clone(), &["securityContext", "runAsUser"]);
    assert_eq!(
        Dockerfile::load().one("USER").split(':').next(),
        Some(uid),
        "the pod's uid is the image's"
    );
    let c = container(&deploy);
    let security = |key: &str| deploy.get(c.clone(), &["securityContext", key]).to_string();
    assert_eq!(security("readOnlyRootFilesystem"), "true");
    assert_eq!(security("allowPrivilegeEscalation"), "false");
    assert_eq!(
        exec_form(deploy.get(c.clone(), &["securityContext", "capabilities", "drop"])),
        ["ALL"]
    );
    for (kind, key) in [
        ("requests", "memory"),
        ("requests", "cpu"),
        ("limits", "memory"),
    ] {
        deploy.get(c.clone(), &["resources", kind, key]);
    }
    let grace: u64 = deploy
        .get(pod, &["terminationGracePeriodSeconds"])
        .parse()
        .unwrap();
    let pre_stop: u64 = deploy
        .get(c, &["lifecycle", "preStop", "sleep", "seconds"])
        .parse()
        .unwrap();
    // After the preStop pause, the shutdown needs at least one chat call's timeout
    // (10 s) for the delivery batch in flight.
    assert!(
        grace >= pre_stop + 10 + 10,
        "terminationGracePeriodSeconds {grace} leaves too little after preStop {pre_stop} s"
    );
}

// ── Against the running server and the built binary ──────────────────────────────────

/// A one-shot HTTP server on loopback that answers `status` to one request and
/// reports the request line it got.
fn answer_once(status: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match conn.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&buf[..n]),
            }
        }
        let _ = conn.write_all(
            format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .as_bytes(),
        );
        let line = String::from_utf8_lossy(&head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        let _ = tx.send(line);
    });
    (port, rx)
}

/// Runs the Dockerfile's HEALTHCHECK command with the built binary, as the container
/// would: the image's WAIVER_LISTEN (every interface) on `port`.
async fn healthcheck(port: u16) -> (bool, String) {
    let docker = Dockerfile::load();
    let (_, command) = docker.healthcheck();
    let entrypoint = exec_form(docker.one("ENTRYPOINT"));
    assert_eq!(
        command[0], entrypoint[0],
        "the HEALTHCHECK runs the image's binary"
    );
    let listen = docker.env()["WAIVER_LISTEN"].clone();
    let host = listen.rsplit_once(':').unwrap().0.to_string();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_waiver"))
            .args(&command[1..])
            .env("WAIVER_LISTEN", format!("{host}:{port}"))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

both!(
    the_probes_and_the_healthcheck_are_routes_the_server_answers,
    |db: common::TestDb| async move {
        let app = common::App::spawn(db).await;
        let port = app.running.as_ref().unwrap().addr.port();
        waiver::chat::install_tls_provider();
        let http = reqwest::Client::new();
        let get = |path: String| {
            let http = http.clone();
            async move {
                http.get(format!("http://127.0.0.1:{port}{path}"))
                    .send()
                    .await
                    .unwrap()
                    .status()
            }
        };

        let deploy = Yaml::load("deployment.yaml");
        let c = container(&deploy);
        for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
            let path = deploy
                .get(c.clone(), &[probe, "httpGet", "path"])
                .to_string();
            assert_eq!(get(path.clone()).await, 200, "{probe} {path}");
        }

        // The path the HEALTHCHECK asks for, seen by a server that answers 200.
        let (fake, asked) = answer_once("200 OK");
        let (ok, err) = healthcheck(fake).await;
        assert!(ok, "{err}");
        let line = asked.recv_timeout(Duration::from_secs(5)).unwrap();
        let path = line.split(' ').nth(1).unwrap().to_string();
        assert_eq!(line, format!("GET {path} HTTP/1.1"));
        assert_eq!(get(path.clone()).await, 200, "the HEALTHCHECK's {path}");

        // Against the real server: healthy.
        let (ok, err) = healthcheck(port).await;
        assert!(ok, "{err}");
        // Anything but 200 is unhealthy, and says why.
        let (fake, _) = answer_once("503 Service Unavailable");
        let (ok, err) = healthcheck(fake).await;
        assert!(!ok);
        assert_eq!(
            err.trim(),
            format!("error: http://127.0.0.1:{fake}/healthz answered 503, not 200")
        );
        app.stop().await;
        // Nothing listening: unhealthy, and says why.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let (ok, err) = healthcheck(closed).await;
        assert!(!ok);
        assert_eq!(
            err.trim(),
            format!(
                "error: cannot get http://127.0.0.1:{closed}/healthz: Connection refused (os error 111)"
            )
        );
    }
);

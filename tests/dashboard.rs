//! The register dashboard on both databases: after several lifecycles the pages show
//! the right counts, rows, charts and timelines; access is refused without the token,
//! with a wrong one, and to people outside the compliance and admin roles; and (in
//! Debian's headless chromium) the pages render, with a screenshot of each kept under
//! `target/dashboard-screenshots/`.

mod common;

use std::collections::HashMap;

use common::{App, TestDb, fast_delivery};
use waiver::config::{DashboardAccess, Secret};
use waiver::domain::State;

const TOKEN: &str = "dashboard-test-token";

async fn spawn(db: TestDb, access: DashboardAccess) -> App {
    App::spawn_with_dashboard(
        db,
        waiver::app::Options {
            delivery: fast_delivery(),
            no_scheduler: true,
            ..Default::default()
        },
        access,
    )
    .await
}

fn with_token() -> DashboardAccess {
    DashboardAccess {
        token: Some(Secret::new(TOKEN)),
        ..Default::default()
    }
}

fn base(app: &App) -> String {
    format!("http://{}", app.running.as_ref().unwrap().addr)
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(app: &App, path: &str, auth: Option<&str>) -> (u16, HashMap<String, String>, String) {
    let mut req = client().get(format!("{}{path}", base(app)));
    if let Some(t) = auth {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
        .collect();
    (status, headers, r.text().await.unwrap())
}

/// The `<tr data-state=…>` row of the by-state table.
fn state_row(state: State, n: u64) -> String {
    format!(
        "<tr data-state=\"{}\"><th scope=\"row\">{}</th><td class=\"n\">{n}</td></tr>",
        state.as_str(),
        state.label()
    )
}

/// The part of `html` from the element with `id` to the end of that table or svg.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[start..];
    let end = rest
        .find("</table>")
        .into_iter()
        .chain(rest.find("</svg>"))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

both!(
    the_register_shows_counts_rows_charts_and_timelines_after_several_lifecycles,
    |db: TestDb| async move {
        let app = spawn(db, with_token()).await;
        let mut ids = common::flow::four_lifecycles(app.service()).await;
        // And one filed two days ago, still waiting for completeness review: past
        // the stage's 24-hour SLA.
        let two_days_ago =
            waiver::domain::Timestamp::from_millis(common::now().millis() - 2 * 86_400_000);
        let waiver::service::Submitted::Filed(late) = app
            .service()
            .submit(
                &common::p("james.carter"),
                &common::form(),
                None,
                two_days_ago,
            )
            .await
            .unwrap()
        else {
            panic!("not filed")
        };
        ids.push(late.id);
        let mut expected: HashMap<State, u64> = HashMap::new();
        for id in &ids {
            *expected.entry(app.request(*id).await.state).or_default() += 1;
        }
        assert_eq!(expected.values().sum::<u64>(), 5);

        let (status, headers, html) = get(&app, "/", Some(TOKEN)).await;
        assert_eq!(status, 200, "{html}");
        assert_eq!(headers["content-type"], "text/html; charset=utf-8");
        assert!(headers["content-security-policy"].starts_with("default-src 'none'"));
        assert!(html.contains("<caption>5 exception(s)</caption>"), "{html}");
        for (state, n) in &expected {
            assert!(html.contains(&state_row(*state, *n)), "{state:?} {n}");
        }
        // What waits on whom: two with the intake desk (the updated request and the
        // late one), one of them past the stage's 24-hour SLA.
        let waiting = section(&html, "waiting");
        assert!(
            waiting.contains(&format!(
                "<tr data-state=\"submitted\"><td>{} <span class=\"muted\">(SLA 24 h)</span></td><td>AI intake desk</td><td></td><td class=\"n\">2</td><td class=\"n\"><span class=\"late\">1</span></td></tr>",
                State::Submitted.label()
            )),
            "{waiting}"
        );
        // The register's rows, newest first, each linking to its page.
        let register = section(&html, "register");
        for id in &ids {
            assert!(register.contains(&format!("<a href=\"/exceptions/{id}\">{id}</a>")));
        }
        assert!(register.find(&ids[3].to_string()) < register.find(&ids[0].to_string()));
        // Charts: SVG with one bar per value, carrying its count.
        let month = common::now().to_datetime().format("%Y-%m").to_string();
        let chart = section(&html, "chart-month");
        assert!(chart.starts_with("id=\"chart-month\" viewBox="), "{chart}");
        assert!(
            chart.contains(&format!("data-label=\"{month}\" data-count=\"5\"")),
            "{chart}"
        );
        let tiers = section(&html, "chart-tier");
        assert!(
            tiers.contains("data-label=\"medium\" data-count=\"2\""),
            "{tiers}"
        );
        assert!(
            tiers.contains("data-label=\"not scored yet\" data-count=\"3\""),
            "{tiers}"
        );
        assert!(
            section(&html, "chart-department")
                .contains("data-label=\"Engineering\" data-count=\"5\"")
        );

        // A filter narrows the counts, rows and charts; a bad one is a clear 400.
        let (status, _, html) = get(&app, "/?state=rejected", Some(TOKEN)).await;
        assert_eq!(status, 200);
        assert!(html.contains("<caption>1 exception(s)</caption>"));
        let register = section(&html, "register");
        assert!(register.contains(&ids[1].to_string()) && !register.contains(&ids[0].to_string()));
        assert!(html.contains("<option value=\"rejected\" selected>Rejected</option>"));
        let (status, _, html) = get(&app, "/?state=bogus", Some(TOKEN)).await;
        assert_eq!(status, 400);
        assert!(
            html.contains("state &quot;bogus&quot; is not a state"),
            "{html}"
        );
        let (status, _, _) = get(&app, "/?month=2026-13", Some(TOKEN)).await;
        assert_eq!(status, 400);

        // CSV of the current filter.
        let (status, headers, csv) = get(&app, "/register.csv?state=rejected", Some(TOKEN)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], ids[1].to_string());
        assert_eq!(&rows[0][2], "rejected");

        // One exception's page: versions, findings, the decision snapshot, conditions,
        // reminders and the audit entries with their hashes.
        let approved = ids[0];
        // The chain only grows (deliveries land in it as the worker sends), so it is read
        // before the page: every entry read then must be on the page.
        let chain = app.store().audit_chain_of(approved).await.unwrap();
        let (status, _, page) = get(&app, &format!("/exceptions/{approved}"), Some(TOKEN)).await;
        assert_eq!(status, 200);
        assert!(
            page.contains(&format!(
                "<strong data-state=\"approved\">{}</strong>",
                State::Approved.label()
            )),
            "{page}"
        );
        assert!(section(&page, "assessments").contains("3 × 3 = 9"));
        let decisions = section(&page, "decisions");
        assert!(
            decisions.contains("Hannah Berg") && decisions.contains("governance sha256"),
            "{decisions}"
        );
        assert!(section(&page, "conditions").contains("Enable SSO"));
        let audit = section(&page, "audit");
        for e in chain {
            assert!(
                audit.contains(&format!("<td class=\"n\">{}</td>", e.seq)),
                "entry {} on the page",
                e.seq
            );
            assert!(audit.contains(&e.hash), "entry {} hash", e.seq);
        }
        let (_, _, page) = get(&app, &format!("/exceptions/{}", ids[3]), Some(TOKEN)).await;
        let versions = section(&page, "versions");
        assert!(versions.contains("title — answers"), "{versions}");
        assert!(section(&page, "reminders").contains("sent"));
        let (status, _, _) = get(&app, "/exceptions/AIX-9999", Some(TOKEN)).await;
        assert_eq!(status, 404);
        let (status, headers, svg) = get(&app, "/sop.svg", Some(TOKEN)).await;
        assert_eq!(status, 200);
        assert_eq!(headers["content-type"], "image/svg+xml");
        assert!(svg.starts_with("<svg xmlns="));
        app.stop().await;
    }
);

both!(
    the_dashboard_refuses_without_the_token_with_a_wrong_one_and_when_off,
    |db: TestDb| async move {
        let app = spawn(db, with_token()).await;
        for path in ["/", "/exceptions/AIX-0001", "/register.csv", "/sop.svg"] {
            let (status, headers, html) = get(&app, path, None).await;
            assert_eq!(status, 401, "{path}");
            assert_eq!(headers["www-authenticate"], "Bearer");
            assert!(html.contains("<form method=\"post\" action=\"/login\">"));
            let (status, _, _) = get(&app, path, Some("wrong-token")).await;
            assert_eq!(status, 401, "{path}");
        }
        // The login form: a wrong token is refused, the right one sets the cookie.
        let login = |token: &str| {
            client()
                .post(format!("{}/login", base(&app)))
                .form(&[("token", token)])
                .send()
        };
        let r = login("wrong-token").await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().get("set-cookie").is_none());
        let r = login(TOKEN).await.unwrap();
        assert_eq!(r.status(), 303);
        assert_eq!(r.headers()["location"], "/");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(cookie.contains(attribute), "{cookie}");
        }
        assert!(
            !cookie.contains(TOKEN),
            "the cookie is not the token itself"
        );
        let pair = cookie.split(';').next().unwrap();
        let r = client()
            .get(format!("{}/", base(&app)))
            .header("cookie", pair)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = client()
            .get(format!("{}/", base(&app)))
            .header("cookie", format!("{}=forged", waiver::web::COOKIE))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
        app.stop().await;

        // Off: nothing configured refuses, and says how to turn it on.
        let db = TestDb::sqlite().await;
        let app = spawn(db, DashboardAccess::default()).await;
        let (status, _, html) = get(&app, "/", Some(TOKEN)).await;
        assert_eq!(status, 403);
        assert!(html.contains("Set WAIVER_DASHBOARD_TOKEN"), "{html}");
        app.stop().await;
    }
);

#[tokio::test]
async fn behind_a_proxy_only_compliance_and_administrators_see_the_register() {
    let db = TestDb::sqlite().await;
    let app = spawn(
        db,
        DashboardAccess {
            user_header: Some("x-forwarded-user".into()),
            ..Default::default()
        },
    )
    .await;
    let gov = common::gov();
    let viewers: Vec<_> = gov
        .workflow
        .administrators
        .iter()
        .chain(&gov.workflow.revokers)
        .flat_map(|r| gov.role(r).unwrap().members.clone())
        .collect();
    let outsider = gov
        .people
        .iter()
        .find(|p| !viewers.contains(&p.id))
        .unwrap();
    let as_user = |who: String| {
        client()
            .get(format!("{}/", base(&app)))
            .header("x-forwarded-user", who)
            .send()
    };
    assert_eq!(as_user(viewers[0].to_string()).await.unwrap().status(), 200);
    let r = as_user(outsider.id.to_string()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("holds none of the roles that may see it")
    );
    assert_eq!(as_user("mallory".into()).await.unwrap().status(), 403);
    let r = client()
        .get(format!("{}/", base(&app)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no header: not signed in");
    app.stop().await;
}

/// Headless chromium, or `None` (the test says it is skipped, and fails under
/// `WAIVER_REQUIRE_CHROMIUM=1`).
fn chromium() -> Option<&'static str> {
    let found = ["chromium", "chromium-browser"].into_iter().find(|b| {
        std::process::Command::new(b)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    });
    if found.is_none() {
        assert!(
            std::env::var("WAIVER_REQUIRE_CHROMIUM").as_deref() != Ok("1"),
            "WAIVER_REQUIRE_CHROMIUM=1 but chromium is not installed"
        );
        eprintln!("SKIPPED: chromium is not installed; the browser checks did not run");
    }
    found
}

fn browse(browser: &str, args: &[&str], url: &str) -> String {
    let dir = std::env::temp_dir().join(format!("waiver-chromium-{}", std::process::id()));
    let out = std::process::Command::new(browser)
        // Not under the suite's faketime run: the browser keeps its own clock.
        .env_remove("LD_PRELOAD")
        .env_remove("FAKETIME")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-dev-shm-usage",
        ])
        .arg(format!("--user-data-dir={}", dir.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn in_a_browser_the_pages_render_with_their_charts_and_a_screenshot_of_each() {
    let Some(browser) = chromium() else {
        return;
    };
    let db = TestDb::sqlite().await;
    let app = spawn(
        db,
        DashboardAccess {
            open: true,
            ..Default::default()
        },
    )
    .await;
    let ids = common::flow::four_lifecycles(app.service()).await;
    let shots =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dashboard-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let base = base(&app);
    let pages: Vec<(String, String)> = vec![
        ("register".into(), format!("{base}/")),
        ("register-phone".into(), format!("{base}/?tier=medium")),
        ("exception".into(), format!("{base}/exceptions/{}", ids[0])),
        ("sop".into(), format!("{base}/sop.svg")),
    ];
    let handle = tokio::task::spawn_blocking(move || {
        let mut doms = HashMap::new();
        for (name, url) in &pages {
            let size = if name.ends_with("phone") {
                "390,1600"
            } else {
                "1280,2000"
            };
            let file = shots.join(format!("{name}.png"));
            browse(
                browser,
                &[
                    &format!("--window-size={size}"),
                    &format!("--screenshot={}", file.display()),
                ],
                url,
            );
            let png = std::fs::read(&file).expect("a screenshot");
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 10_000,
                "{name}: {} bytes",
                png.len()
            );
            doms.insert(name.clone(), browse(browser, &["--dump-dom"], url));
        }
        doms
    });
    let doms = handle.await.unwrap();
    // What the browser built from the register page: the tables and the charts' bars.
    let dom = &doms["register"];
    assert!(dom.contains("<caption>4 exception(s)</caption>"), "{dom}");
    for chart in [
        "chart-month",
        "chart-region",
        "chart-department",
        "chart-policy",
        "chart-tier",
    ] {
        let svg = section(dom, chart);
        assert!(svg.contains("<g class=\"bar\""), "{chart} has bars");
    }
    assert!(section(dom, "chart-tier").contains("data-count=\"2\""));
    assert!(doms["register-phone"].contains("<caption>2 exception(s)</caption>"));
    let page = &doms["exception"];
    assert!(page.contains(&format!("{} · ", ids[0])));
    assert!(page.contains("id=\"audit\""));
    assert!(doms["sop"].contains("Risk score 1–25"));
    app.stop().await;
}

both!(
    the_register_dimensions_of_existing_requests_are_backfilled_by_the_migration,
    |db: TestDb| async move {
        // Migration 9 fills the new columns from each request's stored version: run
        // its backfill again over requests the writer filled, after blanking them, and
        // the columns come back the same.
        let svc = db.service().await;
        common::flow::four_lifecycles(&svc).await;
        let store = db.store().await;
        let before = store.register_rows(&Default::default(), 100).await.unwrap();
        store
            .execute_raw("UPDATE requests SET department = '', regions = '', created_month = ''")
            .await
            .unwrap();
        let file = match db.backend {
            "sqlite" => include_str!("../migrations/sqlite/0009_register.sql"),
            _ => include_str!("../migrations/postgres/0009_register.sql"),
        };
        let start = file.find("UPDATE requests").unwrap();
        let end = start + file[start..].find(';').unwrap() + 1;
        let backfill: &'static str = Box::leak(file[start..end].to_string().into_boxed_str());
        store.execute_raw(backfill).await.unwrap();
        let after = store.register_rows(&Default::default(), 100).await.unwrap();
        assert_eq!(before, after);
        assert!(
            after
                .iter()
                .all(|r| r.department == "engineering" && r.regions == ["us"])
        );
        let groups = store.register_groups(&Default::default()).await.unwrap();
        let month = common::now().to_datetime().format("%Y-%m").to_string();
        assert!(groups.iter().all(|g| g.month == month), "{groups:?}");
    }
);

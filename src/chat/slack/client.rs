//! The Slack Web API client: slack-morphism's hyper client pointed at `SLACK_API_URL`.
//!
//! Built with an HTTPS-or-HTTP connector so that tests and `waiver demo` can point it
//! at a fake on loopback; production URLs are HTTPS. Rate control is ours (the
//! delivery worker paces per channel and honours `Retry-After`), so slack-morphism's
//! own is left off.

use std::sync::Arc;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use slack_morphism::prelude::*;

use crate::config::Secret;

pub type Connector = SlackClientHyperConnector<HttpsConnector<HttpConnector>>;

/// A Slack Web API client with its bot token.
#[derive(Clone)]
pub struct SlackApi {
    client: Arc<SlackClient<Connector>>,
    token: SlackApiToken,
}

impl SlackApi {
    /// A client for the Web API at `api_url` (e.g. `https://slack.com/api`).
    pub fn new(api_url: &str, bot_token: &Secret) -> std::io::Result<Self> {
        crate::chat::install_tls_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .build();
        let connector =
            SlackClientHyperConnector::with_connector(https).with_slack_api_url(api_url);
        Ok(Self {
            client: Arc::new(SlackClient::new(connector)),
            token: SlackApiToken::new(SlackApiTokenValue::new(bot_token.expose().to_string())),
        })
    }

    /// The client itself (Socket Mode listens through it).
    pub fn client(&self) -> Arc<SlackClient<Connector>> {
        self.client.clone()
    }

    /// A session for one or more calls.
    pub fn session(&self) -> SlackClientSession<'_, Connector> {
        self.client.open_session(&self.token)
    }
}

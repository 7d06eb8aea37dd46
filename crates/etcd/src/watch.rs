//! [`Watch`]: one watch stream on one member, read message by message into
//! [`WatchEvent`]s. The client opens it (`client.rs`, which tries the endpoints in turn);
//! once open it stays on its member, and its end (`None`) or error is the caller's cue
//! to watch again, from the revision after the last one it saw.

use std::collections::VecDeque;
use std::time::Duration;

use rampart_telemetry::http_client::{self, Streaming};

use crate::error::{describe, Error};
use crate::model::WatchEvent;
use crate::wire::{self, Message};

/// How long a watch waits for its next message before it gives up: above etcd's default
/// progress notification interval (10 minutes), which every watch asks for, so only a
/// member that stopped talking reaches it. A member process that dies is seen at once
/// (the connection closes), a host that vanishes within about half a minute (TCP
/// keepalive), and a member that loses its leader ends its watches itself (every request
/// requires a leader).
pub const DEFAULT_WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(15 * 60);

/// An open watch. Dropping it closes its connection, which ends the watch on etcd.
#[derive(Debug)]
pub struct Watch {
    /// `None` once the stream ended, failed or was canceled.
    stream: Option<Streaming>,
    pending: VecDeque<WatchEvent>,
    /// The endpoint, for messages.
    url: String,
}

/// A stream's own error as the caller sees it: the member's trouble (5xx: no leader,
/// shutting down) is [`Error::Unavailable`], anything else a refusal.
pub(crate) fn stream_error(url: &str, http: u16, code: i64, message: String) -> Error {
    if http >= 500 {
        Error::Unavailable(format!("{url}: {message}"))
    } else {
        wire::refusal(http, code, message)
    }
}

impl Watch {
    /// A watch reading `stream` from `url`, whose first message gave `first`.
    pub(crate) fn new(stream: Streaming, url: String, first: Vec<WatchEvent>) -> Watch {
        let mut watch = Watch {
            stream: Some(stream),
            pending: VecDeque::new(),
            url,
        };
        watch.queue(first, "");
        if let Some(stream) = &mut watch.stream {
            stream.set_idle_timeout(DEFAULT_WATCH_IDLE_TIMEOUT);
        }
        watch
    }

    /// The longest silence [`next`](Self::next) waits through before it fails with
    /// [`Error::Unavailable`] ([`DEFAULT_WATCH_IDLE_TIMEOUT`] unless set). Set it above
    /// the members' `--experimental-watch-progress-notify-interval`.
    pub fn set_idle_timeout(&mut self, idle: Duration) {
        if let Some(stream) = &mut self.stream {
            stream.set_idle_timeout(idle);
        }
    }

    /// The next event; `None` when the stream ended (etcd closed it, or after
    /// [`WatchEvent::Canceled`]): watch again. An error (the member lost its leader, the
    /// connection broke, the idle timeout passed) also ends the watch.
    pub async fn next(&mut self) -> Result<Option<WatchEvent>, Error> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            let Some(stream) = &mut self.stream else {
                return Ok(None);
            };
            let line = match stream.next_line().await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    self.stream = None;
                    return Ok(None);
                }
                Err(e) => {
                    self.stream = None;
                    return Err(match e {
                        http_client::Error::TooLarge { .. } => Error::Protocol(e.to_string()),
                        _ => Error::Unavailable(format!("{}: watch: {}", self.url, describe(&e))),
                    });
                }
            };
            if line.trim_ascii().is_empty() {
                continue;
            }
            match wire::watch_message(&line) {
                Ok(Message::Result((events, reason))) => self.queue(events, &reason),
                Ok(Message::Error {
                    http,
                    code,
                    message,
                }) => {
                    self.stream = None;
                    return Err(stream_error(&self.url, http, code, message));
                }
                Err(e) => {
                    self.stream = None;
                    return Err(e);
                }
            }
        }
    }

    /// Queues `events`; a cancellation closes the stream (etcd keeps it open, silent).
    fn queue(&mut self, events: Vec<WatchEvent>, reason: &str) {
        for event in events {
            if let WatchEvent::Canceled { compact_revision } = event {
                tracing::debug!(endpoint = %self.url, compact_revision, reason, "etcd canceled a watch");
                self.stream = None;
            }
            self.pending.push_back(event);
        }
    }
}

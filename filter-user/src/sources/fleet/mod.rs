//! The fleet: edge hosts sharing block decisions through a NATS JetStream key-value bucket
//! (keyed by target, values are [`value::FleetDecision`]) and heavy hitters on a core subject
//! (once per second, [`value::RateReport`]). One task owns the connection; the daemon loop
//! hands it commands without waiting and receives typed events, so the loop never awaits NATS.
//!
//! A session: connect, bind (or make) the bucket, watch it with its history (every key's last
//! value: the full set, then live changes), publish what was queued while disconnected. On a
//! disconnection, a failed publish or a broken watch the session ends; the client reconnects
//! with a back-off, and the next session reads the whole set again. Decisions made meanwhile
//! wait in a queue (the latest operation per target) and are published first thing.

pub mod auth;
pub mod value;

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use futures_util::StreamExt as _;
use tokio::sync::mpsc;

use self::value::{FleetDecision, RateReport, ValueError};
use crate::{config::fleet::Fleet, target::Target};

/// Operations queued while disconnected, at most (the oldest are dropped beyond).
const MAX_PENDING: usize = 100_000;
/// Operations published per batch (their acknowledgements are awaited together).
const BATCH: usize = 1024;
/// A sync whose bucket seemed to hold entries but delivers nothing for this long is over
/// (the entries aged out between the count and the watch).
const SYNC_IDLE: Duration = Duration::from_secs(2);

/// What the daemon asks the fleet task to do.
#[derive(Debug)]
pub(crate) enum Command {
    /// Publish this host's decision.
    Publish(FleetDecision),
    /// Delete the decision for this target fleet-wide.
    Delete(Target),
    /// Publish this host's heavy hitters (dropped while disconnected: they are stale at once).
    Report(RateReport),
}

/// What the fleet task tells the daemon.
#[derive(Debug)]
pub(crate) enum Event {
    /// Connected; the bucket is being read.
    Up,
    /// The session ended; the maps keep enforcing, the client reconnects.
    Down {
        /// Why (never a secret).
        error: String,
    },
    /// A value in the bucket (during the sync or live), parsed or refused.
    Put {
        /// Its key.
        key: String,
        /// The parsed value.
        value: Result<FleetDecision, ValueError>,
    },
    /// A key deleted or purged.
    Deleted {
        /// The target its key names.
        target: Result<Target, ValueError>,
    },
    /// The bucket was read entirely: these are the targets it holds now.
    Synced {
        /// Every target with a value.
        present: HashSet<Target>,
    },
    /// Publishing failed; the operations wait for the next session.
    PublishFailed {
        /// How many.
        count: u64,
        /// Why.
        error: String,
    },
    /// A peer's heavy hitters, or why its report was refused.
    Report(Result<RateReport, ValueError>),
}

/// The daemon's ends of the fleet task.
pub(crate) struct Handle {
    /// Commands to the task (never blocks).
    pub commands: mpsc::UnboundedSender<Command>,
    /// Events from the task.
    pub events: mpsc::Receiver<Event>,
}

/// Starts the fleet task; it runs until `Handle::commands` is dropped.
pub(crate) fn spawn(settings: Fleet, auth: auth::Auth, host: String) -> Handle {
    let (commands, rx) = mpsc::unbounded_channel();
    let (tx, events) = mpsc::channel(4096);
    tokio::spawn(async move {
        run(settings, auth, host, rx, tx).await;
    });
    Handle { commands, events }
}

/// Operations waiting to be published: the latest per target, in order of arrival.
#[derive(Default)]
struct Pending {
    ops: HashMap<Target, (u64, Command)>,
    next: u64,
}

impl Pending {
    fn push(&mut self, command: Command) {
        let target = match &command {
            Command::Publish(d) => d.target,
            Command::Delete(t) => *t,
            Command::Report(_) => return,
        };
        if self.ops.len() >= MAX_PENDING
            && !self.ops.contains_key(&target)
            && let Some(oldest) = self
                .ops
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(t, _)| *t)
        {
            self.ops.remove(&oldest);
        }
        self.next += 1;
        self.ops.insert(target, (self.next, command));
    }

    fn take(&mut self) -> Vec<Command> {
        let mut ops: Vec<(u64, Command)> = self.ops.drain().map(|(_, op)| op).collect();
        ops.sort_by_key(|(n, _)| *n);
        ops.into_iter().map(|(_, op)| op).collect()
    }
}

/// How a session ended.
enum End {
    /// The daemon is gone.
    Stop,
    /// Something failed; reconnect and read the set again.
    Failed(String),
}

async fn run(
    settings: Fleet,
    auth: auth::Auth,
    host: String,
    mut commands: mpsc::UnboundedReceiver<Command>,
    events: mpsc::Sender<Event>,
) {
    let (conn_tx, mut conn) = mpsc::unbounded_channel();
    let options = match auth::options(&settings, &auth, &host, conn_tx) {
        Ok(options) => options,
        Err(err) => {
            let _ = events
                .send(Event::Down {
                    error: format!("credentials: {err}"),
                })
                .await;
            return;
        }
    };
    let servers: Vec<async_nats::ServerAddr> = settings
        .servers
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
    let client = match options.connect(servers).await {
        Ok(client) => client,
        Err(err) => {
            let _ = events
                .send(Event::Down {
                    error: err.to_string(),
                })
                .await;
            return;
        }
    };
    let mut pending = Pending::default();
    let mut backoff = Duration::from_millis(100);
    loop {
        // Wait for the client to be connected, queueing what the daemon sends meanwhile.
        while client.connection_state() != async_nats::connection::State::Connected {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        if !queue(&mut pending, command, &events).await {
                            return;
                        }
                    }
                    None => return,
                },
                event = conn.recv() => {
                    // Why connecting fails (refused, TLS, authorization): for `status`.
                    if let Some(
                        event @ (async_nats::Event::ClientError(_)
                        | async_nats::Event::ServerError(_)),
                    ) = event
                        && events.send(Event::Down { error: event.to_string() }).await.is_err()
                    {
                        return;
                    }
                }
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        let outcome = session(
            &client,
            &settings,
            &host,
            &mut pending,
            &mut commands,
            &mut conn,
            &events,
        )
        .await;
        match outcome {
            End::Stop => return,
            End::Failed(error) => {
                if events.send(Event::Down { error }).await.is_err() {
                    return;
                }
            }
        }
        // A session that failed while connected (a JetStream error) must not spin.
        let until = tokio::time::Instant::now() + backoff;
        backoff = (backoff * 2).min(Duration::from_secs(5));
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => {
                        if !queue(&mut pending, command, &events).await {
                            return;
                        }
                    }
                    None => return,
                },
                _ = conn.recv() => {}
                () = tokio::time::sleep_until(until) => break,
            }
        }
        if client.connection_state() == async_nats::connection::State::Connected {
            continue;
        }
        backoff = Duration::from_millis(100);
    }
}

/// Queues a command while there is no session; a decision or deletion counts as a publish
/// failure (it could not be published when made). False when the daemon is gone.
async fn queue(pending: &mut Pending, command: Command, events: &mpsc::Sender<Event>) -> bool {
    let counts = !matches!(command, Command::Report(_));
    pending.push(command);
    !counts
        || events
            .send(Event::PublishFailed {
                count: 1,
                error: "NATS unreachable".into(),
            })
            .await
            .is_ok()
}

/// The bucket, bound or made. It is made as the stream the key-value API makes (`KV_NAME`,
/// one value per key, rollups, direct gets), directly: async-nats' `create_key_value` first
/// reads the account info, whose answer from nats-server 2.9 lacks fields the client requires.
async fn bucket(
    js: &async_nats::jetstream::Context,
    settings: &Fleet,
) -> Result<async_nats::jetstream::kv::Store, String> {
    use async_nats::jetstream::stream;
    if let Ok(store) = js.get_key_value(settings.bucket.as_str()).await {
        return Ok(store);
    }
    js.create_stream(stream::Config {
        name: format!("KV_{}", settings.bucket),
        description: Some("Floodgate fleet decisions, keyed by target".into()),
        subjects: vec![format!("$KV.{}.>", settings.bucket)],
        max_messages_per_subject: 1,
        max_age: settings.max_ttl.0,
        max_message_size: i32::try_from(value::MAX_VALUE_BYTES).unwrap_or(i32::MAX),
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        deny_purge: false,
        allow_direct: true,
        num_replicas: 1,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    })
    .await
    .map_err(|err| format!("making the bucket {}: {err}", settings.bucket))?;
    js.get_key_value(settings.bucket.as_str())
        .await
        .map_err(|err| format!("bucket {}: {err}", settings.bucket))
}

#[expect(
    clippy::too_many_lines,
    reason = "one select loop over the session's inputs"
)]
async fn session(
    client: &async_nats::Client,
    settings: &Fleet,
    host: &str,
    pending: &mut Pending,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    conn: &mut mpsc::UnboundedReceiver<async_nats::Event>,
    events: &mpsc::Sender<Event>,
) -> End {
    let js = async_nats::jetstream::new(client.clone());
    let store = match bucket(&js, settings).await {
        Ok(store) => store,
        Err(err) => return End::Failed(err),
    };
    let count = match store.status().await {
        Ok(status) => status.values(),
        Err(err) => return End::Failed(format!("bucket status: {err}")),
    };
    let mut watch = match store.watch_with_history(">").await {
        Ok(watch) => watch,
        Err(err) => return End::Failed(format!("watching the bucket: {err}")),
    };
    let mut rates = if settings.share_rates {
        match client.subscribe(settings.rates_subject.clone()).await {
            Ok(sub) => Some(sub),
            Err(err) => return End::Failed(format!("subscribing to the rates: {err}")),
        }
    } else {
        None
    };
    if events.send(Event::Up).await.is_err() {
        return End::Stop;
    }
    let prefix = format!("$KV.{}.", settings.bucket);
    // The queue first: decisions made while disconnected.
    let queued = pending.take();
    if let Err((failed, error)) = publish(&js, &prefix, queued).await {
        return failed_publish(pending, failed, error, events).await;
    }
    let mut present: Option<HashSet<Target>> = Some(HashSet::new());
    if count == 0 {
        let present = present.take().unwrap_or_default();
        if events.send(Event::Synced { present }).await.is_err() {
            return End::Stop;
        }
    }
    let mut idle = tokio::time::interval(SYNC_IDLE);
    idle.tick().await;
    let mut seen_since_tick = false;
    loop {
        tokio::select! {
            entry = watch.next() => {
                let entry = match entry {
                    Some(Ok(entry)) => entry,
                    Some(Err(err)) => return End::Failed(format!("watching the bucket: {err}")),
                    None => return End::Failed("the bucket watch ended".into()),
                };
                seen_since_tick = true;
                let event = match entry.operation {
                    async_nats::jetstream::kv::Operation::Put => {
                        let value = value::parse_decision(&entry.key, &entry.value);
                        if let (Some(set), Ok(v)) = (present.as_mut(), &value) {
                            set.insert(v.target);
                        }
                        Event::Put { key: entry.key.clone(), value }
                    }
                    async_nats::jetstream::kv::Operation::Delete
                    | async_nats::jetstream::kv::Operation::Purge => Event::Deleted {
                        target: value::target_of_key(&entry.key),
                    },
                };
                if events.send(event).await.is_err() {
                    return End::Stop;
                }
                if entry.delta == 0
                    && let Some(present) = present.take()
                    && events.send(Event::Synced { present }).await.is_err()
                {
                    return End::Stop;
                }
            }
            _ = idle.tick() => {
                if !seen_since_tick
                    && let Some(present) = present.take()
                    && events.send(Event::Synced { present }).await.is_err()
                {
                    return End::Stop;
                }
                seen_since_tick = false;
            }
            command = commands.recv() => {
                let Some(first) = command else { return End::Stop };
                let mut batch = vec![first];
                while batch.len() < BATCH && let Ok(more) = commands.try_recv() {
                    batch.push(more);
                }
                let (reports, ops): (Vec<Command>, Vec<Command>) =
                    batch.into_iter().partition(|c| matches!(c, Command::Report(_)));
                for report in reports {
                    if let Command::Report(report) = report
                        && let Ok(json) = serde_json::to_vec(&report)
                    {
                        // Best effort: a lost report is replaced by the next one in a second.
                        let _ = client.publish(settings.rates_subject.clone(), json.into()).await;
                    }
                }
                if let Err((failed, error)) = publish(&js, &prefix, ops).await {
                    return failed_publish(pending, failed, error, events).await;
                }
            }
            message = next_message(rates.as_mut()) => {
                let Some(message) = message else {
                    return End::Failed("the rates subscription ended".into());
                };
                let report = value::parse_report(&message.payload);
                if report.as_ref().is_ok_and(|r| r.host == host) {
                    continue;
                }
                if events.send(Event::Report(report)).await.is_err() {
                    return End::Stop;
                }
            }
            event = conn.recv() => {
                if matches!(event, Some(async_nats::Event::Disconnected | async_nats::Event::Closed)) {
                    return End::Failed("disconnected from NATS".into());
                }
            }
        }
    }
}

/// Queues the failed operations again and reports the failure.
async fn failed_publish(
    pending: &mut Pending,
    failed: Vec<Command>,
    error: String,
    events: &mpsc::Sender<Event>,
) -> End {
    let count = failed.len() as u64;
    for op in failed {
        pending.push(op);
    }
    if events
        .send(Event::PublishFailed {
            count,
            error: error.clone(),
        })
        .await
        .is_err()
    {
        return End::Stop;
    }
    End::Failed(format!("publishing: {error}"))
}

async fn next_message(sub: Option<&mut async_nats::Subscriber>) -> Option<async_nats::Message> {
    match sub {
        Some(sub) => sub.next().await,
        None => std::future::pending().await,
    }
}

/// Publishes puts and deletes, all sent before any acknowledgement is awaited; on a failure,
/// the operations not acknowledged and why.
async fn publish(
    js: &async_nats::jetstream::Context,
    prefix: &str,
    ops: Vec<Command>,
) -> Result<(), (Vec<Command>, String)> {
    let mut acks = Vec::with_capacity(ops.len());
    let mut ops = ops.into_iter();
    while let Some(op) = ops.next() {
        let sent = match &op {
            Command::Publish(d) => {
                let json = value::encode(d);
                js.publish(format!("{prefix}{}", value::key_of(d.target)), json.into())
                    .await
            }
            Command::Delete(target) => {
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("KV-Operation", "DEL");
                js.publish_with_headers(
                    format!("{prefix}{}", value::key_of(*target)),
                    headers,
                    Vec::new().into(),
                )
                .await
            }
            Command::Report(_) => continue,
        };
        match sent {
            Ok(ack) => acks.push((op, ack)),
            Err(err) => {
                let mut failed: Vec<Command> = acks.into_iter().map(|(op, _)| op).collect();
                failed.push(op);
                failed.extend(ops);
                return Err((failed, err.to_string()));
            }
        }
    }
    let mut failed = Vec::new();
    let mut error = String::new();
    for (op, ack) in acks {
        if let Err(err) = ack.await {
            error = err.to_string();
            failed.push(op);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err((failed, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(target: &str, n: u64) -> Command {
        Command::Publish(FleetDecision {
            target: target.parse().unwrap(),
            expires_ms: n,
            decided_us: n,
            reason: "r".into(),
            rule: "r".into(),
            offence: 1,
            origin: value::SharedOrigin::Rule,
            origin_host: "a".into(),
        })
    }

    #[test]
    fn the_queue_keeps_the_latest_operation_per_target_in_order() {
        let mut p = Pending::default();
        p.push(decision("198.18.0.1", 1));
        p.push(decision("198.18.0.2", 2));
        p.push(Command::Delete("198.18.0.1".parse().unwrap()));
        p.push(Command::Report(RateReport {
            host: "a".into(),
            at_ms: 0,
            hitters: Vec::new(),
        }));
        let ops = p.take();
        assert_eq!(ops.len(), 2);
        assert!(matches!(&ops[0], Command::Publish(d) if d.target.to_string() == "198.18.0.2"));
        assert!(matches!(&ops[1], Command::Delete(t) if t.to_string() == "198.18.0.1"));
        assert!(p.take().is_empty());
    }
}

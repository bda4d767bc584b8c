//! A node's queues on the real RabbitMQ carry their bounds (each test on
//! its own exchange and queue names): the node queue keeps at most
//! `queue_max_length` events, dropping the oldest into the dead-letter
//! queue, which keeps at most `dead_letter_max_length`; an unused node
//! queue expires; a queue left unbounded by an earlier version is
//! replaced by a bounded one instead of failing the subscription.

use std::time::Duration;

use artisync_domain::topology::Topology;
use artisync_domain::{GatewayLabel, NodeId};
use artisync_ports::bus::EventSubscriber;
use artisync_rabbitmq::RabbitSubscriber;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeleteOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};

const DEADLINE: Duration = Duration::from_secs(30);
const LABEL: &str = "Label1";

fn amqp_url() -> String {
    std::env::var("TEST_AMQP_URL")
        .or_else(|_| std::env::var("AMQP_URL"))
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

struct Broker {
    conn: Connection,
    topology: Topology,
    node: NodeId,
}

impl Broker {
    async fn new(adjust: impl FnOnce(&mut Topology)) -> Broker {
        let unique = uuid::Uuid::new_v4().simple().to_string();
        let mut topology = Topology {
            exchange: format!("artisync.test.{unique}.deployments"),
            queue_prefix: format!("artisync.test.{unique}."),
            ..Topology::default()
        };
        adjust(&mut topology);
        let conn = Connection::connect(&amqp_url(), ConnectionProperties::default())
            .await
            .expect("broker");
        Broker {
            conn,
            topology,
            node: NodeId::parse("gw-1").expect("node id"),
        }
    }

    fn queue(&self) -> String {
        self.topology.queue_for(&self.node)
    }

    fn dead_letter(&self) -> String {
        self.topology.dead_letter_queue_for(&self.node)
    }

    /// Subscribes as the node would, then goes away (no consumer left).
    async fn subscribe_and_leave(&self) {
        let subscriber = RabbitSubscriber::new(amqp_url(), self.topology.clone());
        let label = GatewayLabel::parse(LABEL).expect("label");
        let subscription = subscriber
            .subscribe(&self.node, &[label], 1)
            .await
            .expect("subscribe");
        drop(subscription);
        // The consumer is gone once its connection is: wait for that.
        self.wait_for(|count| count.consumers == 0).await;
    }

    async fn publish(&self, n: usize) {
        let channel = self.conn.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        for i in 0..n {
            channel
                .basic_publish(
                    self.topology.exchange.as_str().into(),
                    LABEL.into(),
                    BasicPublishOptions::default(),
                    format!("{{\"n\": {i}}}").as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await
                .expect("publish")
                .await
                .expect("confirm");
        }
    }

    /// Messages and consumers of `queue`, or `None` when it does not exist.
    async fn count(&self, queue: &str) -> Option<Count> {
        // A failed passive declare closes its channel: one per probe.
        let channel: Channel = self.conn.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .ok()?;
        let _ = channel.close(200, "probe done".into()).await;
        Some(Count {
            messages: declared.message_count(),
            consumers: declared.consumer_count(),
        })
    }

    async fn wait_for(&self, done: impl Fn(Count) -> bool) {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(c) = self.count(&self.queue()).await
                && done(c)
            {
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "the node queue never got there"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn clean_up(self) {
        let channel = self.conn.create_channel().await.expect("channel");
        for queue in [self.queue(), self.dead_letter()] {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        let _ = channel
            .exchange_delete(
                self.topology.exchange.as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await;
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    messages: u32,
    consumers: u32,
}

#[tokio::test]
async fn node_and_dead_letter_queues_keep_at_most_their_bounds() {
    let b = Broker::new(|t| {
        t.queue_max_length = 5;
        t.dead_letter_max_length = 3;
    })
    .await;
    b.subscribe_and_leave().await;
    b.publish(20).await;
    // Publishing is confirmed once the queues took (or dropped) each one.
    let queue = b.count(&b.queue()).await.expect("node queue");
    assert_eq!(
        queue.messages, 5,
        "the node queue holds more than its bound"
    );
    let dead = b.count(&b.dead_letter()).await.expect("dead-letter queue");
    assert_eq!(
        dead.messages, 3,
        "the dead-letter queue holds other than its bound"
    );
    b.clean_up().await;
}

#[tokio::test]
async fn an_unbounded_queue_of_an_earlier_version_is_replaced() {
    let b = Broker::new(|t| t.queue_max_length = 2).await;
    // As an earlier version declared them: durable, dead-lettering, no
    // bounds.
    let channel = b.conn.create_channel().await.expect("channel");
    let mut old_args = FieldTable::default();
    old_args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("".into()),
    );
    old_args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(b.dead_letter().as_str().into()),
    );
    for (queue, args) in [
        (b.dead_letter(), FieldTable::default()),
        (b.queue(), old_args),
    ] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .expect("old declare");
    }
    b.subscribe_and_leave().await;
    b.publish(6).await;
    let queue = b.count(&b.queue()).await.expect("node queue");
    assert_eq!(queue.messages, 2, "the old unbounded queue is still in use");
    b.clean_up().await;
}

#[tokio::test]
async fn an_unused_node_queue_expires() {
    let b = Broker::new(|t| t.queue_expires_ms = 1000).await;
    b.subscribe_and_leave().await;
    // Probe less often than the expiry, should a probe count as use.
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        if b.count(&b.queue()).await.is_none() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "an unused node queue never expires"
        );
    }
    b.clean_up().await;
}

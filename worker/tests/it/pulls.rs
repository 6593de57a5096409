//! The worker's pulls: jobs that arrived for a pull but were never taken go back to the queue
//! when the worker stops pulling, instead of waiting out their acknowledgement timeout.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use kai_common::testing::{TestEnv, nats_url};
use kai_worker::pulls::Pulls;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_received_but_not_taken_are_handed_back_on_close() {
    let env = TestEnv::new();
    let client = async_nats::connect(nats_url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let name = format!("{}_PULLS", env.prefix.to_uppercase());
    let jobs = js
        .create_stream(stream::Config {
            name: name.clone(),
            subjects: vec![format!("{}.pulls", env.prefix)],
            retention: stream::RetentionPolicy::WorkQueue,
            ..Default::default()
        })
        .await
        .unwrap();
    // A minute's acknowledgement timeout: a job not handed back would wait that long.
    let pull = jobs
        .create_consumer(consumer::pull::Config {
            durable_name: Some("workers".into()),
            ack_wait: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .unwrap();
    for n in 0..5 {
        js.publish(format!("{}.pulls", env.prefix), n.to_string().into())
            .await
            .unwrap()
            .await
            .unwrap();
    }

    let mut pulls = Pulls::open(pull.clone(), client.clone(), js.clone())
        .await
        .unwrap();
    pulls
        .request(5, 1 << 20, Duration::from_secs(1))
        .await
        .unwrap();
    let taken = pulls.next().await.expect("a job");
    taken.ack().await.unwrap();
    // The other four reached this worker's inbox; it stops without taking them.
    tokio::time::sleep(Duration::from_millis(300)).await;
    pulls.close().await;

    let mut again = pull
        .fetch()
        .max_messages(5)
        .expires(Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut redelivered = 0;
    while let Some(message) = again.next().await {
        message.unwrap().ack().await.unwrap();
        redelivered += 1;
    }
    assert_eq!(
        redelivered, 4,
        "the four jobs not taken are delivered again at once"
    );
    let _ = js.delete_stream(&name).await;
    env.cleanup().await;
}

//! Every scheme against its real server (Redis and RabbitMQ on 127.0.0.1,
//! ZeroMQ over tcp and ipc): bytes in == bytes out through a URL alone; and
//! a password in a URL or an option never appears in an error.

use std::time::Duration;

use futures::StreamExt;
use mq_archiver::{
    Archiver, BackendKind, Bytes, Config, Connection, Error, ListId, MailingList, Outcome,
    PublisherClient, Selection, Subscriber, Subscription,
};

const BASE_URL: &str = "https://archive.example.org/list/{list_id}/";

/// A unique name for this run's keys, queues and subscribers.
fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::now_v7().simple())
}

/// Publishes one mail through `open_archiver(url, options)` and reads it
/// back through `connect_subscriber(subscriber_url, options)`: the bytes
/// must be the same.
async fn round_trip(url: &str, options: &[(&str, String)], subscriber_url: Option<&str>) {
    let archive_options = options
        .iter()
        .cloned()
        .chain([("base-url", BASE_URL.to_owned())]);
    let archiver = mq_archiver::open_archiver(url, archive_options)
        .await
        .unwrap();
    let publisher: &PublisherClient = archiver.publisher();
    let subscriber_url = match (subscriber_url, publisher.hub_handle()) {
        (Some(url), _) => url.to_owned(),
        (None, Some(hub)) => hub.endpoint().to_owned(),
        (None, None) => url.to_owned(),
    };
    let subscriber_options = options.iter().filter(|(k, _)| *k != "hub-dir").cloned();
    let subscriber = mq_archiver::connect_subscriber(&subscriber_url, subscriber_options)
        .await
        .unwrap();
    let name = unique("facade").parse().unwrap();
    let mut deliveries = subscriber
        .subscribe(&Subscription::new(name))
        .await
        .unwrap();

    let raw = Bytes::from(format!(
        "Message-ID: <{}@example.org>\r\nSubject: through {url}\r\n\r\nHi\r\n",
        unique("m")
    ));
    let list = MailingList::public(ListId::new("facade.lists.example.org").unwrap());
    let receipt = archiver.archive_message(&list, raw.clone()).await.unwrap();
    assert_eq!(receipt.outcome, Outcome::Published);
    let delivery = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
        .await
        .expect("a delivery within 20 s")
        .expect("the stream is open")
        .unwrap();
    assert_eq!(delivery.envelope().body, raw);
    delivery.ack().await.unwrap();
    drop(deliveries);
    subscriber.purge().await.unwrap();
    publisher.purge().await.unwrap();
    subscriber.close().await.unwrap();
    publisher.close().await.unwrap();
}

#[tokio::test]
async fn memory_url_shares_one_broker_per_name() {
    round_trip(&format!("memory:{}", unique("broker")), &[], None).await;
    round_trip("memory:", &[], None).await;
}

#[tokio::test]
async fn redis_url() {
    let prefix = unique("facade");
    round_trip("redis://127.0.0.1:6379/0", &[("prefix", prefix)], None).await;
}

#[tokio::test]
async fn amqp_url_with_classic_queues() {
    let options = [
        ("prefix", unique("facade")),
        ("queue-type", "classic".into()),
    ];
    round_trip("amqp://guest:guest@127.0.0.1:5672/%2f", &options, None).await;
}

#[tokio::test]
async fn amqp_credentials_as_options() {
    let options = [
        ("prefix", unique("facade")),
        ("user", "guest".into()),
        ("password", "guest".into()),
    ];
    round_trip("amqp://127.0.0.1:5672/%2f", &options, None).await;
}

#[tokio::test]
async fn tcp_url_binds_a_hub_and_connects_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let options = [
        ("hub-dir", dir.path().display().to_string()),
        ("anonymous", "true".into()),
    ];
    round_trip("tcp://127.0.0.1:*", &options, None).await;
}

#[tokio::test]
async fn ipc_url() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("ipc://{}", dir.path().join("hub.sock").display());
    let options = [
        ("hub-dir", dir.path().join("hub").display().to_string()),
        ("anonymous", "true".into()),
    ];
    round_trip(&endpoint, &options, Some(&endpoint)).await;
}

#[tokio::test]
async fn zeromq_credentials_from_user_info_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let hub = mq_archiver::connect_publisher(
        "tcp://127.0.0.1:*",
        [
            ("hub-dir", dir.path().display().to_string()),
            ("user", "hyperkitty".into()),
            ("password", "s3cret-zap".into()),
        ],
    )
    .await
    .unwrap();
    let endpoint = hub.hub_handle().unwrap().endpoint().to_owned();
    let address = endpoint.strip_prefix("tcp://").unwrap();
    let name: mq_archiver::SubscriberName = unique("zap").parse().unwrap();

    let good = format!("tcp://hyperkitty:s3cret-zap@{address}");
    let client = mq_archiver::connect_subscriber(&good, [("connect-timeout", "5s")])
        .await
        .unwrap();
    let accepted = client.subscribe(&Subscription::new(name.clone())).await;
    assert!(accepted.is_ok(), "{:?}", accepted.err());
    client.close().await.unwrap();

    let bad = format!("tcp://hyperkitty:wrong-zap-password@{address}");
    let client = mq_archiver::connect_subscriber(&bad, [("connect-timeout", "2s")])
        .await
        .unwrap();
    let error = client
        .subscribe(&Subscription::new(name))
        .await
        .err()
        .expect("wrong credentials are refused");
    assert!(
        !format!("{error} {error:?}").contains("wrong-zap-password"),
        "{error}"
    );
    client.close().await.unwrap();
    hub.close().await.unwrap();
}

/// A hub whose allowlist comes from `grants-file` serves each principal
/// what its grant allows and refuses the rest with `Forbidden`; a hub
/// without authentication must be asked for (`anonymous=true`), and then
/// binds loopback only.
#[tokio::test]
async fn zeromq_grants_file_and_anonymous_only_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let grants = dir.path().join("grants.json");
    std::fs::write(
        &grants,
        r##"[{"user": "web", "password": "s3cret-web",
             "grant": {"principal": "web", "subscribers": ["web"], "lists": ["#.example.org"]}}]"##,
    )
    .unwrap();
    let hub = mq_archiver::connect_publisher(
        "tcp://127.0.0.1:*",
        [
            ("hub-dir", dir.path().join("hub").display().to_string()),
            ("grants-file", grants.display().to_string()),
        ],
    )
    .await
    .unwrap();
    let endpoint = hub.hub_handle().unwrap().endpoint().to_owned();
    let address = endpoint.strip_prefix("tcp://").unwrap();
    let client = mq_archiver::connect_subscriber(
        &format!("tcp://web:s3cret-web@{address}"),
        [("connect-timeout", "5s")],
    )
    .await
    .unwrap();
    let web: mq_archiver::SubscriberName = "web".parse().unwrap();
    let own = Subscription::new(web.clone())
        .select(Selection::all().list("dev.example.org".parse().unwrap()));
    let accepted = client.subscribe(&own).await;
    assert!(accepted.is_ok(), "{:?}", accepted.err());
    match client.subscribe(&Subscription::new(web)).await {
        Err(mq_archiver::BackendError::Forbidden(why)) => {
            assert!(why.contains("list pattern \"#\""), "{why}")
        }
        other => panic!("every list is not granted to web: {:?}", other.err()),
    }
    client.close().await.unwrap();
    hub.close().await.unwrap();

    let unauthenticated = mq_archiver::connect_publisher(
        "tcp://127.0.0.1:*",
        [("hub-dir", dir.path().join("open").display().to_string())],
    )
    .await;
    match unauthenticated {
        Err(Error::MissingOption { key, why }) => {
            assert_eq!(key, "anonymous");
            assert!(why.contains("grants-file"), "{why}");
        }
        other => panic!("no authentication must be asked for: {:?}", other.err()),
    }
    let both = mq_archiver::connect_publisher(
        "tcp://127.0.0.1:*",
        [
            ("hub-dir", dir.path().join("both").display().to_string()),
            ("grants-file", grants.display().to_string()),
            ("anonymous", "true".into()),
        ],
    )
    .await;
    assert!(
        matches!(&both, Err(Error::InvalidOption { key, .. }) if key == "anonymous"),
        "{:?}",
        both.err()
    );
    let exposed = mq_archiver::connect_publisher(
        "tcp://0.0.0.0:*",
        [
            ("hub-dir", dir.path().join("exposed").display().to_string()),
            ("anonymous", "true".into()),
        ],
    )
    .await;
    match exposed {
        Err(Error::Backend(mq_archiver::BackendError::Forbidden(why))) => {
            assert!(why.contains("tcp://0.0.0.0:*"), "{why}")
        }
        other => panic!(
            "anonymous on every interface must be refused: {:?}",
            other.err()
        ),
    }
}

#[tokio::test]
async fn a_password_never_appears_in_an_error() {
    // Redis on 127.0.0.1 has no password: AUTH with one is refused.
    let secret = "hunter2-in-the-url";
    for url in [
        format!("redis://archiver:{secret}@127.0.0.1:6379/0"),
        format!("rediss://archiver:{secret}@127.0.0.1:6379/0"),
        format!("amqp://guest:{secret}@127.0.0.1:5672/%2f"),
        format!("amqps://guest:{secret}@127.0.0.1:5672/%2f"),
        format!("redis+unix://archiver:{secret}@/nonexistent/redis.sock"),
        format!("nosuch://archiver:{secret}@127.0.0.1/"),
        format!("redis://archiver:{secret}@127.0.0.1:notaport/"),
        format!("redis+cluster://archiver:{secret}@h1:7000,h2:7001/"),
        format!("tcp://u:{secret}@h1:5555,h2:5555"),
    ] {
        let error = match mq_archiver::connect_subscriber(&url, [("connect-timeout", "1s")]).await {
            Err(error) => error,
            Ok(client) => panic!("{url} connected: {client:?}"),
        };
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains(secret), "{shown}");
    }
    let secret_option = [("password", "hunter2-as-an-option")];
    let error = mq_archiver::connect_subscriber("redis://127.0.0.1:6379/0", secret_option)
        .await
        .expect_err("AUTH with a password Redis does not have");
    assert!(
        !format!("{error} {error:?}").contains("hunter2"),
        "{error:?}"
    );
    let config = Config::parse(
        &format!("amqp://guest:{secret}@h/"),
        [("password", "hunter2")],
    );
    assert!(!format!("{config:?}").contains("hunter2"));
}

#[test]
fn each_scheme_names_its_backend() {
    for (url, backend) in [
        ("memory:", BackendKind::Memory),
        ("memory:lists", BackendKind::Memory),
        ("redis://127.0.0.1:6379", BackendKind::Redis),
        ("rediss://redis.example.org:6380/1", BackendKind::Redis),
        ("redis+unix:///run/redis.sock", BackendKind::Redis),
        (
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            BackendKind::Rabbitmq,
        ),
        ("amqps://rabbit.example.org/lists", BackendKind::Rabbitmq),
        ("tcp://127.0.0.1:5555", BackendKind::Zeromq),
        ("ipc:///run/archiver/hub.sock", BackendKind::Zeromq),
    ] {
        let config = Config::parse(url, mq_archiver::NO_OPTIONS).unwrap();
        assert_eq!(config.backend(), backend, "{url}");
    }
}

#[test]
fn reserved_forms_parse_and_are_not_supported_yet() {
    let none = mq_archiver::NO_OPTIONS;
    for (url, options) in [
        ("redis+cluster://h1:7000,h2:7001/", &none[..]),
        ("tcp://h1:5555,h2:5555", &none[..]),
        ("tcp://h1:5555", &[("hub", "tcp://h2:5555")][..]),
        (
            "amqp://h1/%2f",
            &[("node", "amqp://h2/%2f"), ("node", "amqp://h3/%2f")][..],
        ),
        ("amqp://h1,h2/%2f", &none[..]),
    ] {
        let error = Config::parse(url, options.iter().copied()).unwrap_err();
        assert!(
            matches!(error, Error::NotSupportedYet { .. }),
            "{url}: {error:?}"
        );
    }
}

#[test]
fn unknown_schemes_and_bad_urls_are_typed_errors() {
    let none = mq_archiver::NO_OPTIONS;
    let error = Config::parse("kafka://127.0.0.1:9092", none).unwrap_err();
    assert!(matches!(error, Error::UnknownScheme { ref scheme, .. } if scheme == "kafka"));
    for url in ["127.0.0.1:6379", "redis://h:port/", "tcp://", "nonsense"] {
        let error = Config::parse(url, none).unwrap_err();
        assert!(
            matches!(
                error,
                Error::InvalidUrl { .. } | Error::UnknownScheme { .. }
            ),
            "{url}: {error:?}"
        );
    }
}

/// A valid value for every key, under a URL it applies to; and a bad value
/// where a key has one: the error names the key.
#[test]
fn every_option_key_takes_a_good_value_and_names_itself_on_a_bad_one() {
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        // (key, url, good value, bad value)
        ("prefix", "redis://h", "lists", Some("lists:*")),
        ("user", "redis://h", "archiver", Some("")),
        ("password", "amqp://h/%2f", "secret", None),
        ("tls-ca-file", "rediss://h", "/etc/ca.pem", Some("")),
        ("max-envelope-bytes", "tcp://h:1", "1048576", Some("1MiB")),
        ("durability", "redis://h", "fsync:0:1s", Some("always")),
        ("claim-idle", "redis://h", "90s", Some("90")),
        ("poll-interval", "redis://h", "100ms", Some("fast")),
        ("consumer-name", "redis://h", "archive-2", Some("")),
        ("queue-type", "amqp://h/%2f", "quorum", Some("stream")),
        ("keep-unrouted", "amqp://h/%2f", "false", Some("no")),
        ("legacy-routing-keys", "amqp://h/%2f", "false", Some("no")),
        (
            "grant-file",
            "amqp://h/%2f",
            "/etc/archiver/grant.json",
            Some(""),
        ),
        ("hub-dir", "tcp://h:1", "/var/lib/archiver", Some("")),
        (
            "grants-file",
            "tcp://h:1",
            "/etc/archiver/grants.json",
            Some(""),
        ),
        ("anonymous", "ipc:///h", "true", Some("yes")),
        ("curve-key", "tcp://h:1", "/etc/archiver/hub.key", Some("")),
        (
            "curve-server-key",
            "tcp://h:1",
            "/etc/archiver/hub.pub",
            Some(""),
        ),
        ("connect-timeout", "ipc:///h", "120s", Some("2 minutes")),
        ("tail", "tcp://h:1", "tcp://127.0.0.1:5556", Some("")),
        ("spool-dir", "memory:", "/var/spool/archiver", Some("")),
        ("publish-timeout", "memory:", "2s", Some("-1s")),
        ("base-url", "memory:", BASE_URL, Some("")),
        ("archiver-name", "memory:", "mq-archiver", Some("")),
    ];
    let reserved = ["node", "hub"];
    for key in mq_archiver::OPTION_KEYS {
        assert!(
            reserved.contains(key) || cases.iter().any(|c| c.0 == *key),
            "no case for {key}"
        );
    }
    for &(key, url, good, bad) in cases {
        Config::parse(url, [(key, good)]).unwrap_or_else(|e| panic!("{key}={good}: {e}"));
        if let Some(bad) = bad {
            match Config::parse(url, [(key, bad)]) {
                Err(Error::InvalidOption { key: named, .. }) => assert_eq!(named, key),
                other => panic!("{key}={bad:?}: {other:?}"),
            }
        }
    }
    match Config::parse("redis://h", [("prefx", "lists")]) {
        Err(Error::UnknownOption { key }) => assert_eq!(key, "prefx"),
        other => panic!("{other:?}"),
    }
    match Config::parse("redis://h", [("hub-dir", "/tmp")]) {
        Err(Error::OptionNotApplicable { key, .. }) => assert_eq!(key, "hub-dir"),
        other => panic!("{other:?}"),
    }
    match Config::parse("memory:", [("user", "u")]) {
        Err(Error::OptionNotApplicable { key, .. }) => assert_eq!(key, "user"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn required_options_are_named() {
    let none = mq_archiver::NO_OPTIONS;
    match mq_archiver::open_archiver("memory:", none).await {
        Err(Error::MissingOption { key, .. }) => assert_eq!(key, "base-url"),
        other => panic!("{:?}", other.err()),
    }
    match mq_archiver::connect_publisher("tcp://127.0.0.1:*", none).await {
        Err(Error::MissingOption { key, .. }) => assert_eq!(key, "hub-dir"),
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn spool_dir_gives_the_archiver_its_spool() {
    let dir = tempfile::tempdir().unwrap();
    let spooled = mq_archiver::open_archiver(
        "memory:",
        [
            ("base-url", BASE_URL.to_owned()),
            ("spool-dir", dir.path().display().to_string()),
            ("publish-timeout", "5s".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(spooled.spool_status().unwrap().depth, 0);
    let plain = mq_archiver::open_archiver("memory:", [("base-url", BASE_URL)])
        .await
        .unwrap();
    assert!(plain.spool_status().is_none());
    assert_eq!(
        spooled
            .shutdown(Duration::from_secs(5))
            .await
            .map(|s| s.depth),
        Some(0)
    );
}

/// CURVE through options alone: key files as `mq-archiver-admin keygen`
/// writes them, the hub's `curve-key` and a grants file of client keys,
/// the subscriber's `curve-key` and `curve-server-key`; a wrong hub key is
/// an `Auth` error naming it, and PLAIN beside CURVE, or half a CURVE
/// configuration, is refused naming the option.
#[tokio::test]
async fn zeromq_curve_through_options() {
    use mq_archiver::Publisher;
    use mq_archiver::zeromq::CurveKeyPair;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name).display().to_string();
    for name in ["hub", "web", "impostor"] {
        CurveKeyPair::generate()
            .unwrap()
            .write_files(&dir.path().join(name))
            .unwrap();
    }
    let web_public = mq_archiver::zeromq::CurveKey::read_file(&dir.path().join("web.pub")).unwrap();
    std::fs::write(
        file("grants.json"),
        format!(
            r##"[{{"curve_public_key": "{web_public}",
                  "grant": {{"principal": "web", "subscribers": ["web"], "lists": ["#"]}}}}]"##
        ),
    )
    .unwrap();
    let hub_options = |extra: &[(&'static str, String)]| {
        let mut options = vec![
            ("hub-dir", file("hub-dir")),
            ("curve-key", file("hub.key")),
            ("grants-file", file("grants.json")),
        ];
        options.extend(extra.iter().cloned());
        options
    };
    let hub = mq_archiver::connect_publisher("tcp://127.0.0.1:*", hub_options(&[]))
        .await
        .unwrap();
    let endpoint = hub.hub_handle().unwrap().endpoint().to_owned();
    let web: mq_archiver::SubscriberName = "web".parse().unwrap();

    let client = mq_archiver::connect_subscriber(
        &endpoint,
        [
            ("curve-key", file("web.key")),
            ("curve-server-key", file("hub.pub")),
            ("connect-timeout", "5s".into()),
        ],
    )
    .await
    .unwrap();
    let mut deliveries = client
        .subscribe(&Subscription::new(web.clone()))
        .await
        .unwrap();
    let list = MailingList::public(ListId::new("curve.example.org").unwrap());
    let envelope = archiver_core::conformance::fixtures::small_mail(&list, "curve.example.org");
    hub.publish(&envelope).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope(), &envelope);
    delivery.ack().await.unwrap();
    client.close().await.unwrap();

    let impostor = mq_archiver::connect_subscriber(
        &endpoint,
        [
            ("curve-key", file("web.key")),
            ("curve-server-key", file("impostor.pub")),
            ("connect-timeout", "5s".into()),
        ],
    )
    .await
    .unwrap();
    match impostor.subscribe(&Subscription::new(web)).await {
        Err(mq_archiver::BackendError::Auth(why)) => {
            assert!(why.contains("wrong hub key"), "{why}")
        }
        other => panic!("expected Auth, got {:?}", other.err()),
    }
    impostor.close().await.unwrap();
    hub.close().await.unwrap();

    let refused = |result: Result<(), Error>, key: &str| match result {
        Err(Error::InvalidOption { key: k, .. }) if k == key => {}
        Err(Error::MissingOption { key: k, .. }) if k == key => {}
        other => panic!("expected an error naming {key}, got {other:?}"),
    };
    let plain_too = [("user", "web".to_owned()), ("password", "pw".to_owned())];
    refused(
        mq_archiver::connect_publisher("tcp://127.0.0.1:*", hub_options(&plain_too))
            .await
            .map(drop),
        "curve-key",
    );
    refused(
        mq_archiver::connect_subscriber(
            &endpoint,
            [("curve-key", file("web.key")), ("user", "web".into())],
        )
        .await
        .map(drop),
        "curve-key",
    );
    refused(
        mq_archiver::connect_subscriber(&endpoint, [("curve-key", file("web.key"))])
            .await
            .map(drop),
        "curve-server-key",
    );
    refused(
        mq_archiver::connect_publisher(
            "tcp://127.0.0.1:*",
            [
                ("hub-dir", file("hub-dir-2")),
                ("curve-key", file("hub.key")),
            ],
        )
        .await
        .map(drop),
        "grants-file",
    );
}

/// A grant file that cannot be read says which file and why.
#[tokio::test]
async fn an_unreadable_grant_file_names_the_file_and_the_reason() {
    let path = "/nonexistent/archiver/grant.json";
    let error = match mq_archiver::connect_subscriber(
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        [("grant-file", path)],
    )
    .await
    {
        Err(error) => error.to_string(),
        Ok(client) => panic!("connected: {client:?}"),
    };
    assert!(
        error.contains(path) && error.contains("cannot be read"),
        "{error}"
    );
}

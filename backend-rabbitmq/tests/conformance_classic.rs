//! The whole conformance suite against a real RabbitMQ with classic
//! durable queues, the alternative to the default quorum queues.

mod support;

archiver_core::conformance_tests!(support::RabbitHarness::on(
    backend_rabbitmq::RabbitConfig::from_env().queue_type(backend_rabbitmq::QueueType::Classic)
));

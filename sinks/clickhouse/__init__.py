"""ClickHouse sink: schema migrations, row mapping, hash chain, Kafka->ClickHouse loop."""

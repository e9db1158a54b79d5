"""The worker's event path: event topics in, graph, hold and dead-letter records out.

In the order an event meets them:

* :mod:`.service` - the Faust side: the model-lineage table, the counters page and the service
  that runs the consumer loop on its own thread;
* :mod:`.consumer` - the consumer loop: consume a batch, hand it to processing, consume the
  next while it is processed, commit in order;
* :mod:`.inflight` - the batches in flight between consuming and committing;
* :mod:`.serving` - the processing side, whichever way it runs: the table copy, batch order
  after a failure, and the processing thread;
* :mod:`.child` - the processing child: a spawned process that takes batches over a pipe;
* :mod:`.resources` - what the processing child builds once (Redis, data keys, snapshot store,
  output producer, batch processor) and how it delivers a processed batch;
* :mod:`.processor` - the batch processor: the compiled event path (``lineage_native``,
  ``native/src/pipeline.rs``) with the Redis questions, the table and the snapshot store
  between its steps; plain synchronous code without Kafka I/O;
* :mod:`.output` - the output producer: a batch is confirmed by the broker or raises.

:mod:`.batch` holds what flows between them.
"""

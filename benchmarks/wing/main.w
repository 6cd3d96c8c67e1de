// The Winglang side of benchmarks/speed.py: a tiny app about the size of a small pipeline
// (records arrive on a queue, a handler writes each one to a bucket, a function feeds the queue),
// compiled for one cloud with `wing compile -t tf-aws main.w`.
bring cloud;

let results = new cloud.Bucket() as "results";
let records = new cloud.Queue() as "records";

records.setConsumer(inflight (message: str) => {
  results.put("scored/{message}.json", message);
});

new cloud.Function(inflight () => {
  records.push("txn-1");
}) as "ingest";

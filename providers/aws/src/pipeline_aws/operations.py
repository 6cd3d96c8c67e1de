"""AWS day two: a deployed stack's dead letters and windows, read and redriven with boto3 (the operator's credentials,
boto3's standard chain and endpoint settings, e.g. AWS_PROFILE, AWS_ENDPOINT_URL for an emulator).

What this pipeline keeps on AWS (see triggers.py):

* the dead-letter bucket (`buckets.dead-letter`, `<stage>/...`): records the runtime dead-lettered; read, replayed
  and removed by the core (`pipeline.operations`) through `store()`, the runtime's S3 store plus DeleteObject;
* each stage's SQS queue (`dead_letters.<stage>`), which Lambda and EventBridge fill with what they gave up on:
  - an asynchronous invocation's on-failure record (object and schedule stages): the original event as
    `requestPayload`, the function's error as `responsePayload`
    (https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html). Redriven the documented
    way: the function is invoked asynchronously (InvocationType Event) with `requestPayload`, and the message is
    deleted once Lambda accepted the invocation (202);
  - an event EventBridge or EventBridge Scheduler could not deliver (the rule's or schedule's DLQ): the event itself
    as the body, the reason in the ERROR_CODE / ERROR_MESSAGE message attributes
    (https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-rule-dlq.html,
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html). Redriven the same way;
  - a Kinesis event source mapping's on-failure record: only the batch's shard and sequence range
    (`KinesisBatchInfo`, https://docs.aws.amazon.com/lambda/latest/dg/kinesis-on-failure-destination.html). The records
    are read back from the stream while it retains them (GetShardIterator AT_SEQUENCE_NUMBER, then GetRecords up to
    the end sequence number), else from the raw archive when it holds exactly that batch
    (`raw/<shard>/<first>-<last>.jsonl.gz`, the Lambda archiver's key), and the function is invoked synchronously
    with a Kinesis event of exactly those records: the runtime writes the output key the batch's first successful
    delivery would have written. Past retention and with no such archive object, it is refused, saying why.

Reading a queue changes nothing: messages are received with a short visibility timeout and made visible again at
once (SQS has no peek). Lambda functions can be invoked from outside (lambda:InvokeFunction), so queued events run
in the deployed function; records from the dead-letter bucket are replayed by the core with this checkout's handler.
"""

from __future__ import annotations

import base64
import gzip
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from pipeline.errors import PipelineError
from pipeline.operations.model import BATCH, EVENT, RECORD, DeadLetter, epoch
from pipeline.operations.protocol import Operations, OperationsStore, Redriven, UnrecoverableError
from pipeline.runtime import keys
from pipeline.spec.model import StageSpec
from pipeline_aws.runtime import S3Store

PEEK_VISIBILITY_S = 30  # how long a message read by list/show stays hidden before it is made visible again (at once, normally)
REDRIVE_VISIBILITY_S = 300  # a message being redriven stays hidden this long if this process dies mid-way
MAX_MESSAGES = 10_000  # messages read from one queue at most
RAW_SUFFIX = ".gz"

# The IAM action behind each API call day-two commands make, for messages that name the missing permission.
ACTIONS = {
    "ListObjectsV2": "s3:ListBucket", "GetObject": "s3:GetObject", "PutObject": "s3:PutObject", "DeleteObject": "s3:DeleteObject",
    "HeadObject": "s3:GetObject", "GetQueueUrl": "sqs:GetQueueUrl", "ReceiveMessage": "sqs:ReceiveMessage",
    "ChangeMessageVisibility": "sqs:ChangeMessageVisibility", "ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "DeleteMessage": "sqs:DeleteMessage", "GetQueueAttributes": "sqs:GetQueueAttributes", "Invoke": "lambda:InvokeFunction",
    "GetShardIterator": "kinesis:GetShardIterator", "GetRecords": "kinesis:GetRecords",
}
DENIED = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "AuthorizationError", "Forbidden", "403",
          "UnrecognizedClientException", "InvalidClientTokenId", "SignatureDoesNotMatch"}
EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}
MISSING = {"NoSuchBucket", "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist", "ResourceNotFoundException"}


class S3OperationsStore(S3Store):
    """The runtime's S3 store, plus DeleteObject (S3 answers a delete of a missing key with success)."""

    def delete(self, bucket: str, key: str) -> None:
        self.client.delete_object(Bucket=bucket, Key=key)


@dataclass(frozen=True)
class QueuedRef:
    """Where a queued event is: its queue and message id (receipt handles are taken afresh when it is redriven)."""

    queue_url: str
    queue: str
    message_id: str


def _error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    return str(response.get("Error", {}).get("Code", "")) if isinstance(response, dict) else ""


class AwsOperations(Operations):
    name = "aws"
    title = "AWS"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.region = self.spec.clouds.aws.region
        self._clients: dict[str, Any] = {}
        self._store: S3OperationsStore | None = None
        self._queue_urls: dict[str, str] = {}

    def client(self, service: str) -> Any:
        """One boto3 client per service: boto3's credential chain, the spec's region, AWS_ENDPOINT_URL(_<SERVICE>) honoured."""
        if service not in self._clients:
            import boto3

            self._clients[service] = boto3.session.Session().client(service, region_name=self.region)
        return self._clients[service]

    def store(self) -> OperationsStore:
        if self._store is None:
            with self.guarded("connecting to S3"):
                self._store = S3OperationsStore(self.client("s3"))
        return self._store

    def location(self, bucket: str, key: str = "") -> str:
        return f"s3://{bucket}/{key}"

    # -- the failure queues ---------------------------------------------------------------------------

    def queue(self, stage: StageSpec) -> str:
        name = (self.outputs.get("dead_letters") or {}).get(stage.name)
        if not isinstance(name, str) or not name:
            from pipeline.operations.protocol import OutputsError

            raise OutputsError(f"the stack's outputs name no dead-letter queue for stage {stage.name} (under \"dead_letters\")")
        return name

    def queue_url(self, stage: StageSpec) -> str:
        name = self.queue(stage)
        if name not in self._queue_urls:
            with self.guarded(f"finding the SQS queue {name}"):
                self._queue_urls[name] = str(self.client("sqs").get_queue_url(QueueName=name)["QueueUrl"])
        return self._queue_urls[name]

    def _receive(self, url: str, visibility: int) -> list[dict[str, Any]]:
        """Every message of the queue, received (so hidden for `visibility` seconds), each with its newest receipt handle."""
        sqs, found = self.client("sqs"), dict[str, dict[str, Any]]()
        while len(found) < MAX_MESSAGES:
            # Long polling (WaitTimeSeconds >= 1) asks every SQS server, so an empty answer means an empty queue.
            got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=visibility, WaitTimeSeconds=1,
                                      AttributeNames=["All"], MessageAttributeNames=["All"]).get("Messages") or []
            fresh = [m for m in got if m["MessageId"] not in found]
            found.update((m["MessageId"], m) for m in got)  # a message received again answers only to its newest handle
            if not fresh:
                break
        return list(found.values())

    def _release(self, url: str, messages: Sequence[dict[str, Any]]) -> None:
        """Make received messages visible again, at once."""
        sqs = self.client("sqs")
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            sqs.change_message_visibility_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(chunk)])

    def queued(self, stage: StageSpec, earliest: float | None) -> Iterator[DeadLetter]:
        url, name = self.queue_url(stage), self.queue(stage)
        with self.guarded(f"reading the SQS queue {name}"):
            messages = list(self._receive(url, PEEK_VISIBILITY_S))
            self._release(url, messages)
        for message in messages:
            yield letter_of(stage, name, url, message)

    def queued_count(self, stage: StageSpec) -> int | None:
        url = self.queue_url(stage)
        with self.guarded(f"reading the attributes of the SQS queue {self.queue(stage)}"):
            found = self.client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return int(found.get("ApproximateNumberOfMessages", 0)) + int(found.get("ApproximateNumberOfMessagesNotVisible", 0))

    # -- redrive --------------------------------------------------------------------------------------

    def redrive(self, letters: Sequence[DeadLetter], dry_run: bool) -> Iterator[Redriven]:
        by_queue: dict[str, list[DeadLetter]] = {}
        for letter in letters:
            if isinstance(letter.ref, QueuedRef):
                by_queue.setdefault(letter.ref.queue_url, []).append(letter)
        for url, wanted in by_queue.items():
            if dry_run:
                for letter in wanted:
                    yield Redriven(letter, True, f"would {self._plan(letter)}")
                continue
            yield from self._redrive_queue(url, wanted)

    def _redrive_queue(self, url: str, wanted: list[DeadLetter]) -> Iterator[Redriven]:
        """Receive the queue (hidden while this runs), send each wanted event, delete it only once sent; everything not
        sent (failed, or arrived since it was listed) is made visible again at the end."""
        by_id = {letter.ref.message_id: letter for letter in wanted}
        keep: list[dict[str, Any]] = []
        try:
            for message in self._receive(url, REDRIVE_VISIBILITY_S):
                letter = by_id.pop(message["MessageId"], None)
                if letter is None:
                    keep.append(message)  # arrived since it was listed: left for the next replay
                    continue
                try:
                    action = self._send(letter)
                except Exception as exc:
                    keep.append(message)
                    said = self.explain(exc, f"redriving {letter.where}")
                    text = str(exc) if isinstance(exc, PipelineError) else said or f"{type(exc).__name__}: {exc}"
                    yield Redriven(letter, False, self._plan(letter), text)
                    continue
                self.client("sqs").delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
                yield Redriven(letter, True, action + "; message deleted from the queue")
        finally:
            if keep:
                self._release(url, keep)
        for letter in by_id.values():
            yield Redriven(letter, True, "already gone from the queue (redriven or expired since it was listed)")

    def _plan(self, letter: DeadLetter) -> str:
        function = self._function(letter.stage)
        if letter.kind == BATCH:
            return f"read the batch's records back and invoke {function} synchronously with them"
        return f"invoke {function} asynchronously with the original event"

    def _function(self, stage: str) -> str:
        name = (self.outputs.get("functions") or {}).get(stage)
        if not isinstance(name, str) or not name:
            from pipeline.operations.protocol import OutputsError

            raise OutputsError(f"the stack's outputs name no function for stage {stage}")
        return name

    def _send(self, letter: DeadLetter) -> str:
        """Send one queued event through the deployed function; raise when Lambda did not take it (or it failed again)."""
        function = self._function(letter.stage)
        if letter.kind == BATCH:
            records, source = self.batch_records(letter)
            response = self.client("lambda").invoke(FunctionName=function, InvocationType="RequestResponse",
                                                    Payload=json.dumps(self.kinesis_event(letter, records)).encode())
            payload = _payload(response)
            if response.get("FunctionError"):
                raise PipelineError(f"{function} failed again on the batch: {_function_error(payload)}")
            failures = (payload or {}).get("batchItemFailures") if isinstance(payload, dict) else None
            if failures:
                raise PipelineError(f"{function} failed again from record {failures[0].get('itemIdentifier')} of the batch (retryable)")
            return f"invoked {function} synchronously with the batch's {len(records)} records ({source})"
        event = letter.event
        if event is None:
            raise UnrecoverableError("the message holds no event to send again")
        response = self.client("lambda").invoke(FunctionName=function, InvocationType="Event", Payload=json.dumps(event).encode())
        status = int(response.get("StatusCode", 0))
        if status != 202:
            raise PipelineError(f"Lambda answered {status} to the asynchronous invocation, not 202")
        return f"invoked {function} asynchronously with the original event (Lambda retries it and keeps what fails, as the first time)"

    # -- a Kinesis batch's records ------------------------------------------------------------------------

    def records_of(self, letter: DeadLetter) -> list[DeadLetter]:
        """A Kinesis on-failure record as the records it names, read back (read-only) from the stream or the raw archive."""
        if letter.kind != BATCH:
            return [letter]
        with self.guarded(f"reading the records of {letter.where} back from the stream"):
            try:
                records, source = self.batch_records(letter)
            except UnrecoverableError as exc:
                return [replace(letter, notes=[*letter.notes, str(exc)])]
        shard = str(letter.input.get("shardId"))
        return [replace(letter, kind=RECORD, data=record["Data"] if isinstance(record["Data"], bytes) else str(record["Data"]).encode(),
                        where=f"{letter.where}, record {index + 1} of {len(records)} ({source})", index=index,
                        input={"shard": shard, "sequence": record["SequenceNumber"], "partition_key": record.get("PartitionKey"),
                               "arrival_time": _seconds(record.get("ApproximateArrivalTimestamp"))},
                        notes=[])
                for index, record in enumerate(records)]

    def batch_records(self, letter: DeadLetter) -> tuple[list[dict[str, Any]], str]:
        """The batch's records (Kinesis API shape: Data, PartitionKey, SequenceNumber, ApproximateArrivalTimestamp) and where
        they came from; UnrecoverableError saying why when they can no longer be had."""
        info = letter.input
        shard, start, end = str(info.get("shardId")), str(info.get("startSequenceNumber")), str(info.get("endSequenceNumber"))
        found = self._from_stream(info, shard, start, end)
        if found is not None:
            return found, "read back from the stream"
        archived = self._from_archive(shard, start, end)
        if archived is not None:
            return archived, "rebuilt from the raw archive"
        retention = self.spec.stream.retention_hours if self.spec.stream is not None else "?"
        archive = ""
        if self.spec.stream is not None and self.spec.stream.archive:
            archive = (f"; the raw archive holds no object for exactly this batch (raw/{keys.safe(shard)}/{keys.sequence(start)}-"
                       f"{keys.sequence(end)}.jsonl.gz): a Firehose archive keeps the records without their sequence numbers, under raw/ "
                       f"around {info.get('approximateArrivalOfFirstRecord')}")
        raise UnrecoverableError(f"the batch (shard {shard}, sequence {start}..{end}) is past the stream's retention ({retention} h){archive}; "
                         "it cannot be sent again as it was: send its records through the stream again")

    def _from_stream(self, info: dict[str, Any], shard: str, start: str, end: str) -> list[dict[str, Any]] | None:
        kinesis = self.client("kinesis")
        # By name when the outputs give it (the stack's own stream), else by the ARN the failure record names.
        stream = self.outputs.get("stream")
        where: dict[str, str] = {"StreamName": stream} if isinstance(stream, str) and stream else {"StreamARN": str(info.get("streamArn"))}
        try:
            iterator = kinesis.get_shard_iterator(**where, ShardId=shard, ShardIteratorType="AT_SEQUENCE_NUMBER",
                                                  StartingSequenceNumber=start)["ShardIterator"]
        except Exception as exc:
            if _error_code(exc) in {"InvalidArgumentException", "ResourceNotFoundException"}:
                return None  # trimmed (past retention) or the stream is gone
            raise
        records: list[dict[str, Any]] = []
        last = int(end)
        while iterator:
            page = kinesis.get_records(ShardIterator=iterator, Limit=10_000)
            for record in page.get("Records") or []:
                if int(record["SequenceNumber"]) > last:
                    return records if records and records[0]["SequenceNumber"] == start else None
                records.append(record)
            if records and records[-1]["SequenceNumber"] == end:
                break
            if not page.get("Records") and not page.get("MillisBehindLatest"):
                break  # at the tip of the shard
            iterator = page.get("NextShardIterator")
        complete = records and records[0]["SequenceNumber"] == start and records[-1]["SequenceNumber"] == end
        return records if complete else None

    def _from_archive(self, shard: str, start: str, end: str) -> list[dict[str, Any]] | None:
        """The Lambda archiver's object for exactly this batch: its records in order, sequence numbers known only at the ends."""
        if self.spec.stream is None or not self.spec.stream.archive:
            return None
        key = keys.output_key(keys.RAW_PREFIX, keys.stream_batch(shard, start, end)) + RAW_SUFFIX
        try:
            data = self.store().get(self.bucket("raw"), key)
        except FileNotFoundError:
            return None
        lines = [line for line in gzip.decompress(data).split(b"\n") if line]
        if not lines:
            return None
        records = [{"Data": line, "PartitionKey": "", "SequenceNumber": ""} for line in lines]
        records[0]["SequenceNumber"], records[-1]["SequenceNumber"] = start, end
        return records

    def kinesis_event(self, letter: DeadLetter, records: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """The event the event source mapping would deliver for these records (what pipeline_aws.runtime.kinesis reads)."""
        info = letter.input
        shard, arn = str(info.get("shardId")), str(info.get("streamArn") or "")
        items = []
        for record in records:
            arrival = record.get("ApproximateArrivalTimestamp")
            data = record["Data"] if isinstance(record["Data"], bytes) else str(record["Data"]).encode()
            items.append({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": record.get("PartitionKey") or "", "sequenceNumber": record["SequenceNumber"],
                            "data": base64.b64encode(data).decode("ascii"),
                            "approximateArrivalTimestamp": _seconds(arrival)},
                "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"{shard}:{record['SequenceNumber']}",
                "eventName": "aws:kinesis:record", "awsRegion": self.region, "eventSourceARN": arn,
            })
        return {"Records": items}

    # -- errors ---------------------------------------------------------------------------------------

    def explain(self, exc: BaseException, doing: str) -> str | None:
        try:
            import botocore.exceptions as errors
        except ImportError:
            return None
        if isinstance(exc, errors.NoCredentialsError | errors.PartialCredentialsError | errors.ProfileNotFound):
            from pipeline_aws.credentials import credentials_problem

            return f"{doing}: {credentials_problem(self.spec) or exc}"
        if isinstance(exc, errors.EndpointConnectionError | errors.ConnectTimeoutError | errors.ReadTimeoutError):
            return f"{doing}: cannot reach AWS ({exc}); check the network, the region ({self.region}) and AWS_ENDPOINT_URL"
        if isinstance(exc, errors.ClientError):
            code, operation = _error_code(exc), str(getattr(exc, "operation_name", ""))
            said = str(exc.response.get("Error", {}).get("Message") or exc)
            if code in DENIED:
                action = ACTIONS.get(operation, operation)
                return f"{doing}: AWS denied {action} ({said}); grant {action} on it to the identity you run as (see 'When something fails' in the README)"
            if code in EXPIRED:
                return f"{doing}: your AWS credentials have expired; sign in again (e.g. `aws sso login`)"
            if code in MISSING:
                return f"{doing}: it does not exist ({code}: {said}); was the stack destroyed, or deployed under other names than these outputs say?"
            return f"{doing}: AWS answered {code or 'an error'}: {said}"
        if isinstance(exc, errors.BotoCoreError):
            return f"{doing}: {exc}"
        return None


def _seconds(moment: Any) -> Any:
    """A record's arrival time as the event carries it (epoch seconds): boto3 gives a datetime."""
    timestamp = getattr(moment, "timestamp", None)
    return timestamp() if callable(timestamp) else moment


def _payload(response: dict[str, Any]) -> Any:
    stream: Any = response.get("Payload")
    raw = stream.read() if stream is not None and hasattr(stream, "read") else stream
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _function_error(payload: Any) -> str:
    if isinstance(payload, dict):
        return f"{payload.get('errorType', 'Error')}: {payload.get('errorMessage', '')}"
    return str(payload)[:300]


def letter_of(stage: StageSpec, queue: str, url: str, message: dict[str, Any]) -> DeadLetter:
    """A queued message as a DeadLetter: a Kinesis on-failure record, an async invocation record, or an undelivered event."""
    text = message.get("Body") or ""
    try:
        body: Any = json.loads(text)
    except ValueError:
        body = text
    attributes = message.get("Attributes") or {}
    sent = int(attributes["SentTimestamp"]) / 1000 if str(attributes.get("SentTimestamp", "")).isdigit() else None
    kept, where = f"SQS queue {queue}", f"SQS queue {queue} message {message['MessageId']}"
    ref = QueuedRef(url, queue, str(message["MessageId"]))
    if isinstance(body, dict) and isinstance(body.get("KinesisBatchInfo"), dict):
        info, context = body["KinesisBatchInfo"], body.get("requestContext") or {}
        response = body.get("responseContext") or {}
        batch = keys.stream_batch(str(info.get("shardId")), str(info.get("startSequenceNumber")), str(info.get("endSequenceNumber")))
        text_ = f"the batch of {info.get('batchSize', '?')} records ({info.get('shardId')}, sequence {info.get('startSequenceNumber')}.." \
                f"{info.get('endSequenceNumber')}) kept failing"
        return DeadLetter(stage.name, BATCH, str(context.get("condition") or "batch failed"), str(response.get("functionError") or ""), text_,
                          kept, where, epoch(body.get("timestamp")) or sent, _int(context.get("approximateInvokeCount")), input=info,
                          batch=batch, ref=ref, notes=["the stream keeps the records for its retention; the message holds only their range"])
    if isinstance(body, dict) and "requestPayload" in body:
        context, response = body.get("requestContext") or {}, body.get("responsePayload")
        error_type = str(response.get("errorType") or "") if isinstance(response, dict) else str((body.get("responseContext") or {}).get("functionError") or "")
        error_message = str(response.get("errorMessage") or "") if isinstance(response, dict) else str(response or "")
        return DeadLetter(stage.name, EVENT, str(context.get("condition") or "invocation failed"), error_type, error_message, kept, where,
                          epoch(body.get("timestamp")) or sent, _int(context.get("approximateInvokeCount")), event=body["requestPayload"],
                          traceback=[str(f) for f in (response.get("stackTrace") or [])][-5:] if isinstance(response, dict) else [], ref=ref)
    attrs = {name: str(value.get("StringValue", "")) for name, value in (message.get("MessageAttributes") or {}).items()}
    retries = _int(attrs.get("RETRY_ATTEMPTS"))
    return DeadLetter(stage.name, EVENT, "not delivered to the function", attrs.get("ERROR_CODE", ""), attrs.get("ERROR_MESSAGE", ""), kept, where,
                      sent, retries + 1 if retries is not None else None, event=body, ref=ref,
                      notes=[f"from {attrs.get('RULE_ARN') or attrs.get('SCHEDULE_ARN') or 'EventBridge'}"])


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None

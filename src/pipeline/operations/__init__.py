"""Day two: see and replay what failed, and how far each windowed stage has read, on every cloud and locally.

The cloud-neutral part lives here, once: the model of a dead letter and how letters group by cause
(`model`), masking what must never be printed (`mask`), reading the records the runtime dead-lettered
from any store (`letters`), replaying them with the stage's current handler at deterministic keys
(`replay`), each stage's window and dead-letter counts (`status`), a stack's deploy outputs
(`outputs`), the local store as a target (`local`) and the text and JSON views (`render`). What only a
cloud knows (its failure queues, its redrive primitives, its SDK's errors) sits behind `protocol.Operations`,
which each backend implements in its own package and returns from `Backend.operations`.
"""

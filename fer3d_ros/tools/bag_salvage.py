"""The messages a damaged rosbag2 still holds, for fer3d-bag eval.

rosbags reads intact bags only: metadata.yaml, an MCAP file's summary at its end, a sqlite3 file as
long as its header says. A recording cut short (a crash, a kill, a full disk) lacks them. Here its
storage files are read record by record in the order written, up to the first damage, with the
`mcap` package's stream reader and Python's sqlite3; metadata.yaml is not read at all.
"""
from __future__ import annotations

import re
import sqlite3
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

STORAGE_SUFFIXES = ('.mcap', '.db3')


class StorageDamaged(RuntimeError):
    """A storage file ends or breaks here; the messages before it were read."""


@dataclass(frozen=True)
class Topic:
    """The part of a rosbags Connection that fer3d-bag uses."""
    topic: str
    msgtype: str
    msgcount: int


def storage_files(path: Path) -> list[Path]:
    """A bag folder's storage files in recording order (bag_2 before bag_10), or the file itself."""
    if path.is_file():
        return [path] if path.suffix in STORAGE_SUFFIXES else []
    files = [f for f in path.iterdir() if f.suffix in STORAGE_SUFFIXES] if path.is_dir() else []
    return sorted(files, key=lambda f: [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', f.name)])


def mcap_records(path: Path) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, type, log time, data) of each message; schemas and channels as they come."""
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader
    schemas: dict[int, str] = {}
    channels: dict[int, tuple[str, str]] = {}
    with open(path, 'rb') as file:
        for record in StreamReader(file).records:
            if isinstance(record, Schema):
                schemas[record.id] = record.name
            elif isinstance(record, Channel):
                channels[record.id] = (record.topic, schemas.get(record.schema_id, ''))
            elif isinstance(record, Message) and record.channel_id in channels:
                yield *channels[record.channel_id], record.log_time, record.data


def sqlite_records(path: Path) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, type, timestamp, data) of each message in insertion order."""
    database = sqlite3.connect(f'{path.absolute().as_uri()}?immutable=1', uri=True)
    try:
        # A cut file holds fewer pages than its header says, which SQLite refuses unless told to
        # read what is there (the connection stays read-only).
        database.execute('PRAGMA writable_schema=ON')
        topics = {row[0]: row[1:] for row in database.execute('SELECT id, name, type FROM topics')}
        for topic_id, timestamp, data in database.execute('SELECT topic_id, timestamp, data FROM messages ORDER BY id'):
            if topic_id in topics:
                yield *topics[topic_id], timestamp, data
    finally:
        database.close()


def storage_records(path: Path) -> Iterator[tuple[str, str, int, bytes]]:
    """Every message of every storage file; StorageDamaged where the first damage stops the reading."""
    for file in storage_files(path):
        read = mcap_records if file.suffix == '.mcap' else sqlite_records
        count = 0
        try:
            for record in read(file):
                yield record
                count += 1
        except Exception as error:  # noqa: BLE001 - mcap, sqlite3 and the decompressors raise many types
            reason = str(error) or f'{type(error).__name__} (the file ends inside a record)'
            raise StorageDamaged(f'{file.name} breaks after {count} messages: {reason}') from error


class SalvagedBag:
    """A damaged bag with the reading interface of rosbags' AnyReader that fer3d-bag uses.

    Opening reads it once to the break: the topics, counts and times it reports are those that
    can be read, whatever metadata.yaml says."""

    def __init__(self, path: Path) -> None:
        self.path = path
        counts: Counter[tuple[str, str]] = Counter()
        self.start_time, self.end_time = 2**63 - 1, 0
        self.damage: str | None = None
        try:
            for topic, msgtype, timestamp, _ in storage_records(path):
                counts[topic, msgtype] += 1
                self.start_time, self.end_time = min(self.start_time, timestamp), max(self.end_time, timestamp + 1)
        except StorageDamaged as error:
            self.damage = str(error)
        self.connections = [Topic(topic, msgtype, count) for (topic, msgtype), count in counts.items()]

    def messages(self, connections: Sequence[Topic]) -> Iterator[tuple[Topic, int, bytes]]:
        """The connections' messages up to the damage, where StorageDamaged is raised."""
        wanted = {(c.topic, c.msgtype): c for c in connections}
        for topic, msgtype, timestamp, data in storage_records(self.path):
            if (connection := wanted.get((topic, msgtype))) is not None:
                yield connection, timestamp, data

    def close(self) -> None:
        """Nothing stays open between readings."""

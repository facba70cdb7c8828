"""The Redis key layout. Every key of one session shares a hash tag (Cluster-safe)."""

from __future__ import annotations


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def session(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:session"

    def exchanges(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:exchanges"

    def exchange(self, sid: str, xid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:x:{xid}"

    def log(self, sid: str, xid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:x:{xid}:log"

    def archives(self, sid: str) -> str:
        """The session's commit archives (a hash: number -> JSON, and each commit's call)."""
        return f"{self.prefix}:{{{sid}}}:archives"

    def lock(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:lock"

    def cancel(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:cancel"

    def channel(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:events"

    def session_pattern(self, sid: str) -> str:
        return f"{self.prefix}:{{{sid}}}:*"

    def index(self, owner: str, sort: str) -> str:
        return f"{self.prefix}:{{idx:{owner}}}:{sort}"

    def agent(self, agent_id: str) -> str:
        """One agent's versions (a hash). Agents share one hash tag: the registry is small."""
        return f"{self.prefix}:{{agents}}:a:{agent_id}"

    def agent_index(self) -> str:
        return f"{self.prefix}:{{agents}}:ids"

    def environment(self, env_id: str) -> str:
        """One environment (JSON). Environments share one hash tag, as agents do, so that an
        environment and its owner's index are written together."""
        return f"{self.prefix}:{{envs}}:e:{env_id}"

    def environment_index(self, owner: str) -> str:
        """The ids of one principal's environments."""
        return f"{self.prefix}:{{envs}}:owner:{owner}"

    def limit(self, principal: str, what: str) -> str:
        """One principal's limit state: its bucket, running leases and usage counters."""
        return f"{self.prefix}:{{lim:{principal}}}:{what}"

    def nonce(self, principal: str, request_id: str) -> str:
        """A signed request's id, kept while a replay of it could still pass the clock check."""
        return f"{self.prefix}:{{lim:{principal}}}:rid:{request_id}"

    def control(self) -> str:
        return f"{self.prefix}:control"

    def stream_token_secret(self) -> str:
        """The secret every worker signs stream tokens with, unless one is configured."""
        return f"{self.prefix}:stream-token-secret"

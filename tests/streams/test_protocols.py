"""Protocol pieces that need no cluster: node token forms, the SPDY/3 header dictionary and
header blocks, the exit-code Status."""

from __future__ import annotations

import struct
import zlib

from kybern.plugins.apiserver.auth import Tokens, authenticate, node_secret
from kybern.plugins.nodestreams import spdy
from kybern.plugins.nodestreams.join import split_token
from kybern.plugins.nodestreams.server import exit_status
from kybern.plugins.nodestreams.spdydict import DICTIONARY, DICTIONARY_ADLER32


def test_token_forms() -> None:
    assert split_token("K10ABCdef::node:s3cret") == ("abcdef", "s3cret")
    assert split_token("plain-secret") == (None, "plain-secret")
    assert node_secret("K10ab::node:s3cret") == "s3cret" == node_secret("s3cret")
    tokens = Tokens(admin="a" * 40, node="K10" + "0" * 64 + "::node:" + "n" * 40)
    assert authenticate("Bearer " + "n" * 40, tokens) == "system:node"
    assert authenticate("Bearer K10" + "f" * 64 + "::node:" + "n" * 40, tokens) == "system:node"
    assert authenticate("Bearer " + "x" * 40, tokens) is None


def test_spdy_header_block_round_trip_with_the_dictionary() -> None:
    assert len(DICTIONARY) == 1423 and zlib.adler32(DICTIONARY) == DICTIONARY_ADLER32
    raw = struct.pack(">I", 3)
    for name, value in (("streamType", "data"), ("port", "8080"), ("requestID", "7")):
        raw += struct.pack(">I", len(name)) + name.encode() + struct.pack(">I", len(value)) + value.encode()
    deflate = zlib.compressobj(zdict=DICTIONARY)
    block = deflate.compress(raw) + deflate.flush(zlib.Z_SYNC_FLUSH)
    assert block[2:6] == struct.pack(">I", DICTIONARY_ADLER32)  # what a peer checks
    inflate = zlib.decompressobj(zdict=DICTIONARY)
    assert spdy.parse_headers(inflate.decompress(block)) == {
        "streamtype": "data",
        "port": "8080",
        "requestid": "7",
    }
    frame = spdy.data_frame(5, b"abc", fin=True)
    assert frame == b"\x00\x00\x00\x05\x01\x00\x00\x03abc"
    assert spdy.control_frame(spdy.SYN_REPLY, b"\x00\x00\x00\x01")[:8] == b"\x80\x03\x00\x02\x00\x00\x00\x04"


def test_exit_status_carries_the_code_as_kubectl_reads_it() -> None:
    assert exit_status(0, ["true"]) == {"metadata": {}, "status": "Success"}
    failed = exit_status(3, ["sh", "-c", "exit 3"])
    assert failed["reason"] == "NonZeroExitCode"
    assert failed["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]

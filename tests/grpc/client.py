"""A real gRPC client (grpcio) for tests/grpc.rs: calls orders.v1.Orders
through the gateway (argv[1] = host:port) and prints one JSON line per case:
the status code and details as the client library reports them, the
response(s), and the trailing metadata. Tokens come from the environment:
MANAGER, READER."""

import json
import os
import sys

import grpc

LIMIT = 8 * 1024 * 1024


def report(case, call):
    try:
        response, rpc = call()
        out = {"case": case, "code": rpc.code().name, "details": rpc.details() or ""}
        out["response"] = response
        out["trailing"] = dict(rpc.trailing_metadata() or ())
    except grpc.RpcError as e:
        out = {"case": case, "code": e.code().name, "details": e.details() or "", "trailing": dict(e.trailing_metadata() or ())}
    print(json.dumps(out), flush=True)


def main():
    channel = grpc.insecure_channel(
        sys.argv[1], options=[("grpc.max_receive_message_length", LIMIT), ("grpc.max_send_message_length", LIMIT)]
    )
    manager, reader = os.environ["MANAGER"], os.environ["READER"]
    auth = lambda t: (("authorization", f"Bearer {t}"),)
    unary = channel.unary_unary("/orders.v1.Orders/GetOrder")
    stream = channel.unary_stream("/orders.v1.Orders/ListOrders")
    upload = channel.stream_unary("/orders.v1.Orders/Upload")
    chat = channel.stream_stream("/orders.v1.Orders/Chat")

    def unary_call(payload, metadata, timeout=10):
        response, rpc = unary.with_call(payload, metadata=metadata, timeout=timeout)
        return response.decode("latin-1"), rpc

    report("unary", lambda: unary_call(b"42", auth(manager)))
    # Client metadata in the identity namespace never reaches the server.
    report("forged", lambda: unary_call(b"42", auth(manager) + (("x-auth-roles", "admin"), ("x-auth-subject", "root"))))

    def server_streaming():
        rpc = stream(b"5", metadata=auth(manager), timeout=10)
        items = [m.decode() for m in rpc]
        return items, rpc

    report("server_streaming", server_streaming)

    def client_streaming():
        response, rpc = upload.with_call(iter([b"a" * 1000, b"b" * 2000, b"c" * 3000]), metadata=auth(manager), timeout=10)
        return response.decode(), rpc

    report("client_streaming", client_streaming)

    def bidi():
        rpc = chat(iter([b"one", b"two", b"three"]), metadata=auth(manager), timeout=10)
        items = [m.decode() for m in rpc]
        return items, rpc

    report("bidi", bidi)
    report("deadline", lambda: unary_call(b"sleep:3", auth(manager), timeout=0.5))

    def big_response():
        response, rpc = unary.with_call(b"big:4194304", metadata=auth(manager), timeout=20)
        return len(response), rpc

    report("big_response", big_response)

    def big_request():
        response, rpc = upload.with_call(iter([b"z" * (4 * 1024 * 1024)]), metadata=auth(manager), timeout=20)
        return response.decode(), rpc

    report("big_request", big_request)
    report("upstream_error", lambda: unary_call(b"fail", auth(manager)))
    report("no_token", lambda: unary_call(b"42", ()))
    report("bad_token", lambda: unary_call(b"42", auth("not.a.token")))
    report("forbidden", lambda: unary_call(b"42", auth(reader)))
    unknown = channel.unary_unary("/billing.v1.Billing/Charge")
    report("no_route", lambda: (lambda r: (r[0].decode(), r[1]))(unknown.with_call(b"1", metadata=auth(manager), timeout=10)))


if __name__ == "__main__":
    sys.exit(main())

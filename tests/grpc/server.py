"""A real gRPC server (grpcio) for tests/grpc.rs: the service orders.v1.Orders
with one method of each kind, on raw bytes (no protobuf needed). Prints its
port on stdout, then serves until killed.

Requests steer it: GetOrder(b"fail") aborts with NOT_FOUND, b"sleep:S" waits
S seconds, b"big:N" answers N bytes. Every call answers with trailing
metadata echoing the identity metadata it received (x-auth-*)."""

import sys
import time
from concurrent import futures

import grpc


def echo_identity(context):
    seen = dict(context.invocation_metadata())
    context.set_trailing_metadata(
        tuple((f"x-echo-{k[len('x-auth-'):]}", v) for k, v in seen.items() if k.startswith("x-auth-"))
    )


def get_order(request, context):
    echo_identity(context)
    if request == b"fail":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such order")
    if request.startswith(b"sleep:"):
        time.sleep(float(request[6:]))
    if request.startswith(b"big:"):
        return b"x" * int(request[4:])
    return b"echo:" + request


def list_orders(request, context):
    echo_identity(context)
    for i in range(int(request)):
        yield b"order-%d" % i


def upload(requests, context):
    echo_identity(context)
    total = sum(len(r) for r in requests)
    return b"got:%d" % total


def chat(requests, context):
    echo_identity(context)
    for r in requests:
        yield b"pong:" + r


def main():
    handler = grpc.method_handlers_generic_handler(
        "orders.v1.Orders",
        {
            "GetOrder": grpc.unary_unary_rpc_method_handler(get_order),
            "ListOrders": grpc.unary_stream_rpc_method_handler(list_orders),
            "Upload": grpc.stream_unary_rpc_method_handler(upload),
            "Chat": grpc.stream_stream_rpc_method_handler(chat),
        },
    )
    limit = 8 * 1024 * 1024
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    sys.exit(main())

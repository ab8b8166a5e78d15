"""The ZeroMQ guide's Lazy Pirate client (lpclient.py): REQ, plain bodies (a sequence number),
timeout, close and reopen, retry. usage: lpclient.py ENDPOINT COUNT. Exit 0 when all COUNT replies match."""
import sys

import zmq

REQUEST_TIMEOUT = 2500
REQUEST_RETRIES = 3
SERVER_ENDPOINT = sys.argv[1]
COUNT = int(sys.argv[2])

context = zmq.Context()
client = context.socket(zmq.REQ)
client.connect(SERVER_ENDPOINT)
for sequence in range(1, COUNT + 1):
    request = str(sequence).encode()
    client.send(request)
    retries_left = REQUEST_RETRIES
    while True:
        if (client.poll(REQUEST_TIMEOUT) & zmq.POLLIN) != 0:
            reply = client.recv()
            if int(reply) == sequence:
                break
            print("E: malformed reply from server: %s" % reply, file=sys.stderr)
            sys.exit(1)
        retries_left -= 1
        client.setsockopt(zmq.LINGER, 0)
        client.close()
        if retries_left == 0:
            print("E: server seems to be offline, abandoning", file=sys.stderr)
            sys.exit(1)
        client = context.socket(zmq.REQ)
        client.connect(SERVER_ENDPOINT)
        client.send(request)
print("lpclient: %d replies" % COUNT)

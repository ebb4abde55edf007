import socket

from edge.ports import free_port


def test_a_free_port_is_one_nothing_listens_on_and_a_server_can_bind_on_loopback():
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as client:
        assert client.connect_ex(("127.0.0.1", port)) != 0  # refused: nothing listens there
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen()
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass

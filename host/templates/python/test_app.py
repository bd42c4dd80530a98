"""Unit tests of the `{{name}}` service; they run under plain Python, with an
in-memory host standing in for Bazaar:

    python3 -m unittest
"""

import json
import unittest

import app
import bazaar


def send(method, target, body=None):
    payload = b"" if body is None else json.dumps(body).encode()
    return app.router.dispatch(bazaar.Request(method, target, [], payload))


class ValidateItemTest(unittest.TestCase):
    def test_trims_the_name_and_defaults_the_quantity(self):
        self.assertEqual(app.validate_item({"name": "  tea "}), {"name": "tea", "quantity": 0})

    def test_refuses_bad_items_with_a_400(self):
        for body in [[], {}, {"name": ""}, {"name": "x" * 101}, {"name": "tea", "quantity": -1},
                     {"name": "tea", "quantity": True}, {"name": "tea", "quantity": 1.5}]:
            with self.assertRaises(bazaar.HttpError, msg=f"expected a 400 for {body}") as caught:
                app.validate_item(body)
            self.assertEqual(caught.exception.status, 400)


class RoutesTest(unittest.TestCase):
    def setUp(self):
        self.host = bazaar.use_memory()

    def test_a_stored_item_reads_back_and_is_listed(self):
        put = send("PUT", "/api/{{name}}/items/tea", {"name": "Tea", "quantity": 2})
        self.assertEqual(put.status, 200, put.body)
        got = send("GET", "/api/{{name}}/items/tea")
        self.assertEqual(got.status, 200, got.body)
        self.assertEqual(got.json_body()["quantity"], 2)
        listed = send("GET", "/api/{{name}}/items").json_body()["items"]
        self.assertEqual([item["id"] for item in listed], ["tea"])

    def test_a_missing_item_is_a_json_404(self):
        got = send("GET", "/api/{{name}}/items/nothing")
        self.assertEqual(got.status, 404)
        self.assertEqual(got.json_body()["status"], 404)

    def test_invalid_json_is_a_400(self):
        response = app.router.dispatch(bazaar.Request("PUT", "/api/{{name}}/items/x", [], b"{"))
        self.assertEqual(response.status, 400, response.body)


class EventsTest(unittest.TestCase):
    def setUp(self):
        self.host = bazaar.use_memory()

    def test_a_redelivered_event_is_handled_once(self):
        event = bazaar.Event("e1", "things", "shop", b'{"n": 1}')
        app.on_event(event)
        app.on_event(event)
        bucket = bazaar.open_bucket(app.BUCKET)
        self.assertEqual(bucket.get_json("last-event:things")["id"], "e1")
        self.assertEqual(bucket.keys("event:"), ["event:e1"])


if __name__ == "__main__":
    unittest.main()

"""Unit tests of the reviews service, on an in-memory host. `build.sh` runs
them; by hand, from this directory:

    PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=../../host/templates/python python3 -m unittest
"""

import json
import unittest

import app
import bazaar

ORDER = {
    "order_id": "o1", "user_id": "ann", "total_cents": 1200, "currency": "EUR",
    "payment_id": "p1",
    "items": [{"product_id": "tea", "name": "Tea", "quantity": 2, "unit_price_cents": 600}],
}


def send(method, target, body=None, user="ann"):
    """A request as the gateway passes it on: `user` is the verified
    caller (None: no token)."""
    payload = b"" if body is None else json.dumps(body).encode()
    headers = [] if user is None else [("x-bazaar-user", user.encode())]
    return app.router.dispatch(bazaar.Request(method, target, headers, payload))


def review(product_id="tea", rating=5, text="Lovely.", **extra):
    return {"product_id": product_id, "rating": rating, "text": text, **extra}


def order_placed(event_id="e1", order=ORDER):
    return bazaar.Event(event_id, "order-placed", "orders", json.dumps(order))


class ReviewsTest(unittest.TestCase):
    def setUp(self):
        self.host = bazaar.use_memory()

    def test_a_buyer_reviews_once_and_the_review_is_listed(self):
        app.on_event(order_placed())
        created = send("POST", "/api/reviews", review(text="  Lovely.  "))
        self.assertEqual(created.status, 201, created.body)
        body = created.json_body()
        fields = ["id", "user_id", "product_id", "rating", "text", "created_at"]
        self.assertEqual(list(body), fields)
        self.assertEqual(body["text"], "Lovely.")
        again = send("POST", "/api/reviews", review(rating=1))
        self.assertEqual(again.status, 409, again.body)
        listed = send("GET", "/api/reviews?product=tea").json_body()
        self.assertEqual([r["id"] for r in listed["reviews"]], [body["id"]])
        self.assertEqual(listed["average_rating"], 5)

    def test_a_customer_who_did_not_buy_the_product_gets_a_403(self):
        app.on_event(order_placed())
        refused = send("POST", "/api/reviews", review(), user="bob")
        self.assertEqual(refused.status, 403, refused.body)
        self.assertEqual(refused.json_body(), {
            "error": "only customers who bought this product can review it", "status": 403})

    def test_an_error_quotes_the_request_id_the_gateway_gave(self):
        request = bazaar.Request("POST", "/api/reviews", [("x-request-id", b"req-7")], b"{}")
        refused = app.router.dispatch(request)
        self.assertEqual(refused.status, 401, refused.body)
        self.assertEqual(refused.json_body()["request_id"], "req-7")
        missing = app.router.dispatch(bazaar.Request("GET", "/nowhere", [("x-request-id", b"req-8")]))
        self.assertEqual(missing.json_body(), {
            "error": "no route for /nowhere", "status": 404, "request_id": "req-8"})

    def test_a_review_is_written_by_the_verified_user_only(self):
        app.on_event(order_placed())
        anonymous = send("POST", "/api/reviews", review(), user=None)
        self.assertEqual(anonymous.status, 401, anonymous.body)
        forged = send("POST", "/api/reviews", review(user_id="ann"), user="bob")
        self.assertEqual(forged.status, 403, forged.body)
        own = send("POST", "/api/reviews", review(user_id="ann"))
        self.assertEqual(own.status, 201, own.body)
        self.assertEqual(own.json_body()["user_id"], "ann")
        self.assertEqual(len(send("GET", "/api/reviews?product=tea").json_body()["reviews"]), 1)

    def test_bad_reviews_are_a_400(self):
        for body in [[], review(rating=0), review(rating=6), review(rating=True),
                     review(rating=4.5), review(text=""), review(text="x" * 2001),
                     review(product_id=""), {**review(), "stars": 5}]:
            response = send("POST", "/api/reviews", body)
            self.assertEqual(response.status, 400, f"expected a 400 for {body}: {response.body}")

    def test_listing_needs_a_product_and_averages_nothing_as_null(self):
        self.assertEqual(send("GET", "/api/reviews").status, 400)
        empty = send("GET", "/api/reviews?product=nothing").json_body()
        self.assertEqual(empty, {"reviews": [], "average_rating": None})

    def test_ids_with_colons_do_not_collide(self):
        self.assertNotEqual(app.review_key("a:b", "c"), app.review_key("a", "b:c"))

    def test_a_redelivered_event_is_recorded_once(self):
        app.on_event(order_placed())
        app.on_event(order_placed())
        bucket = bazaar.open_bucket(app.BUCKET)
        self.assertEqual(bucket.keys("event:"), ["event:e1"])
        self.assertEqual(bucket.keys("bought:"), ["bought:ann:tea"])

    def test_a_malformed_order_is_not_handled(self):
        for payload in [{"order_id": "o2"}, {**ORDER, "items": [{"name": "Tea"}]}]:
            with self.assertRaises(ValueError, msg=f"expected {payload} to be refused"):
                app.on_event(order_placed("e2", payload))

    def test_the_average_is_rounded_to_two_places(self):
        reviews = [{"id": str(i), "rating": r, "created_at": i} for i, r in enumerate([5, 4, 4])]
        self.assertEqual(app.summarize(reviews)["average_rating"], 4.33)


if __name__ == "__main__":
    unittest.main()

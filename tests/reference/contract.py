"""The catalog as ../shared/API.md states it, for the test side: the ten losses in
catalog order and every parameter with its documented default (optional
parameters without a value are null).  Written from the contract, not read from
lossd, so that the reference generator and the API tests check lossd against it."""

LOSS_NAMES = ["mse", "mae", "huber", "bce", "cross_entropy", "focal", "hinge",
              "contrastive", "triplet", "elbo"]

DEFAULT_PARAMS = {
    "mse": {},
    "mae": {},
    "huber": {"delta": 1.0},
    "bce": {"from": "probabilities", "pos_weight": 1.0, "label_smoothing": 0.0},
    "cross_entropy": {"from": "logits", "label_smoothing": 0.0, "class_weights": None,
                      "ignore_index": None},
    "focal": {"gamma": 2.0, "alpha": None, "from": "logits"},
    "hinge": {"margin": 1.0, "squared": False},
    "contrastive": {"margin": 1.0},
    "triplet": {"margin": 1.0, "squared": True},
    "elbo": {"likelihood": "bernoulli", "sigma": 1.0, "beta": 1.0},
}

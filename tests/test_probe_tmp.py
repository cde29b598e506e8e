import threading
import numpy as np, torch, pytest, warnings
from sklearn.datasets import make_classification
from sklearn.frozen import FrozenEstimator
from skorch import NeuralNetClassifier
from torch import nn
from sklaplace import LaplaceClassifier

GATE = {"event": None, "entered": None}


class Blocking(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 8)
        self.out = nn.Linear(8, 2)

    def forward(self, X):
        ev = GATE["event"]
        if ev is not None and threading.current_thread().name == "A":
            GATE["entered"].set()
            ev.wait(30)
        return self.out(torch.tanh(self.body(X)))


def test_overlapping_calls_restore_each_threads_count():
    X, y = make_classification(200, 4, n_informative=3, n_redundant=0, random_state=0)
    X = X.astype(np.float32)
    net = NeuralNetClassifier(Blocking, criterion=nn.CrossEntropyLoss, max_epochs=2, train_split=None, verbose=0).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = LaplaceClassifier(FrozenEstimator(net), prior_precision=1.0).fit(X, y)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    GATE["event"], GATE["entered"] = threading.Event(), threading.Event()
    seen = {}

    def a():
        torch.get_num_threads()
        torch.set_num_threads(2)
        est.predict_proba(X)
        seen["A"] = torch.get_num_threads()

    def b():
        torch.get_num_threads()  # torch's lazy per-thread initialisation
        torch.set_num_threads(4)
        GATE["entered"].wait(30)
        est.predict_proba(X)
        seen["B"] = torch.get_num_threads()
        GATE["event"].set()

    try:
        ta = threading.Thread(target=a, name="A"); tb = threading.Thread(target=b, name="B")
        tb.start(); ta.start(); ta.join(60); tb.join(60)
    finally:
        GATE["event"] = None
        torch.set_num_threads(before)
    print(seen)
    assert seen == {"A": 2, "B": 4}

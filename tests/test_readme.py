"""The README as a newcomer runs it: every ```python block, in order, as written.

The blocks run in one namespace (each block may use the names of the blocks before it, as a
reader pasting them into one session would), in a fresh temporary directory, with nothing
added: no seed, no import the README does not show. A sentence "This prints `...`" right
after a block is checked against what the block printed. The API signature block
(```text) is checked against the estimators' real signatures.
"""

import ast
import inspect
import re
import time
import warnings
from pathlib import Path

import pytest

import sklaplace

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.S | re.M)

# The README trains two small nets for skorch's default 10 epochs and runs two grid
# searches: the blocks took 2.7 s together on a 2-core machine with little else running,
# 10 to 12 s on a busy one (with the current and with the floor versions). A generous
# bound still catches a block that grew into a benchmark (the suite runs them every time).
MAX_SECONDS = 120

pytestmark = pytest.mark.floors


def blocks(language):
    """(line of the opening fence, code, text after the block) for each block."""
    found = []
    for match in FENCE.finditer(README):
        if match.group(1) == language:
            line = README.count("\n", 0, match.start()) + 1
            found.append((line, match.group(2), README[match.end() :]))
    return found


def test_the_readme_has_python_blocks():
    assert len(blocks("python")) >= 3


def test_every_python_block_runs_in_order(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for line, code, after in blocks("python"):
            # padded so that a traceback shows the README's own line numbers
            compiled = compile("\n" * line + code, f"README.md (block at line {line})", "exec")
            exec(compiled, namespace)
            printed = capsys.readouterr().out
            claim = re.match(r"\s*This prints `([^`]*)`", after)
            if claim:
                assert printed.strip() == claim.group(1), (line, printed)
    seconds = time.perf_counter() - start
    assert seconds < MAX_SECONDS, f"the README's blocks took {seconds:.0f} s"
    # A warning in the README's own workflow would teach a newcomer to ignore warnings.
    ours = [w for w in caught if issubclass(w.category, (UserWarning, RuntimeWarning))]
    assert not ours, [f"{w.filename}:{w.lineno}: {w.message}" for w in ours]
    assert list(tmp_path.iterdir()) == [], "the README's code writes no files"


def _documented_signatures():
    (_, text, _), *_ = [b for b in blocks("text") if "LaplaceClassifier(" in b[1]]
    source = re.sub(r"^(\w+)\(", r"def \1(", text, flags=re.M)
    source = re.sub(r"^\)$", "):\n    pass", source, flags=re.M)
    tree = ast.parse(source)
    documented = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            args = node.args
            positional = [a.arg for a in args.args]
            keywords = {
                a.arg: ast.literal_eval(d)
                for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True)
            }
            documented[node.name] = (positional, keywords)
    return documented


def test_the_api_block_shows_the_real_signatures():
    documented = _documented_signatures()
    assert set(documented) == {"LaplaceClassifier", "LaplaceRegressor"}
    for name, (positional, keywords) in documented.items():
        parameters = inspect.signature(getattr(sklaplace, name)).parameters.values()
        real_positional = [p.name for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
        real_keywords = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
        assert positional == real_positional, name
        assert keywords == real_keywords, name


def test_the_pandas_form_of_the_grid_search(monkeypatch):
    """The README's advice for frames: np.r_ drops the column names a ColumnTransformer
    selects by, pd.concat keeps them and the search runs."""
    pd = pytest.importorskip("pandas")
    import numpy as np
    import torch
    from sklearn.compose import make_column_transformer
    from sklearn.frozen import FrozenEstimator
    from sklearn.model_selection import GridSearchCV, PredefinedSplit
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
    from skorch import NeuralNetClassifier

    assert "pd.concat([X_fit, X_val])" in README and "pd.concat([y_fit, y_val])" in README
    rng = np.random.default_rng(0)

    def frame(n):
        X = pd.DataFrame({"income": rng.normal(size=n), "city": rng.choice(["a", "b"], n)})
        return X, pd.Series((X["income"] + (X["city"] == "a") > 0.5).astype(int))

    (X_fit, y_fit), (X_val, y_val) = frame(120), frame(40)
    columns = make_column_transformer(
        (OneHotEncoder(), ["city"]), (StandardScaler(), ["income"]), sparse_threshold=0
    )
    to_float32 = FunctionTransformer(lambda X: X.astype(np.float32))
    torch.manual_seed(0)
    module = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    net = NeuralNetClassifier(
        module, criterion=torch.nn.CrossEntropyLoss, train_split=None, max_epochs=5, verbose=0
    )
    pipe = make_pipeline(columns, to_float32, net).fit(X_fit, y_fit)
    fold = np.r_[np.full(len(y_fit), -1), np.zeros(len(y_val))]
    search = GridSearchCV(
        sklaplace.LaplaceClassifier(FrozenEstimator(pipe)),
        {"prior_precision": [0.1, 10.0]},
        scoring="neg_log_loss",
        cv=PredefinedSplit(fold),
    )
    with pytest.raises(ValueError, match=r"(?i)columns using strings is only supported for"):
        search.fit(np.r_[X_fit, X_val], np.r_[y_fit, y_val])
    search.fit(pd.concat([X_fit, X_val]), pd.concat([y_fit, y_val]))
    assert list(search.best_estimator_.feature_names_in_) == ["income", "city"]

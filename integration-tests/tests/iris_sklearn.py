"""The iris pipeline in scikit-learn, compared with the Rust run's files.

usage: python3 iris_sklearn.py OUT   (OUT: the `--out` folder of examples/iris.rs)

Reads the same CSV database, runs StandardScaler -> PCA(2) ->
LogisticRegression(C=1, the L2 weight linfa calls alpha = 1/C), and checks the
Rust run's `.npy` checkpoints with numpy:
- scaler outputs of all 150 samples within 1e-9;
- PCA components and projections of all 150 samples equal up to each
  component's sign within 1e-6, singular values within 1e-6;
- test accuracy equal (and here, every prediction). Both minimise the same
  objective (summed log-loss + ||W||^2 / 2, intercept unpenalised) with
  L-BFGS, run to tight tolerances (linfa: gradient norm 1e-8, 1000
  iterations; here tol 1e-10), so they agree to ~1e-7 in the weights; only a
  sample within that distance of a class boundary could be predicted
  differently. None of the 75 is: any difference fails the test, naming the
  samples.
Prints one JSON line with the figures; exits 1 on the first mismatch.
"""
import csv
import json
import sys

import numpy as np
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

MEASURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
out = sys.argv[1]


def fail(msg):
    print(f"MISMATCH: {msg}", file=sys.stderr)
    sys.exit(1)


def group(name):
    with open(f"{out}/iris_db/default/{name}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keys = [r["key"] for r in rows]
    x = np.array([[float(r[m]) for m in MEASURES] for r in rows])
    y = np.array([r["species"] for r in rows])
    return keys, x, y


train_keys, x_train, y_train = group("train")
test_keys, x_test, y_test = group("test")
assert len(train_keys) == len(test_keys) == 75

scaler = StandardScaler().fit(x_train)
s_train, s_test = scaler.transform(x_train), scaler.transform(x_test)
worst = 0.0
for keys, s in ((train_keys, s_train), (test_keys, s_test)):
    for k, row in zip(keys, s):
        rust = np.load(f"{out}/features/scaler/{k}.npy")
        worst = max(worst, float(np.max(np.abs(rust - row))))
if worst > 1e-9:
    fail(f"scaler outputs differ by {worst:g} (> 1e-9)")
scaler_diff = worst

pca = PCA(n_components=2, svd_solver="full").fit(s_train)
components = np.load(f"{out}/pca_components.npy")
if components.shape != pca.components_.shape:
    fail(f"PCA components have shape {components.shape}, scikit-learn {pca.components_.shape}")
signs = np.sign(np.sum(components * pca.components_, axis=1))
comp_diff = float(np.max(np.abs(components * signs[:, None] - pca.components_)))
if comp_diff > 1e-6:
    fail(f"PCA components differ by {comp_diff:g} up to sign (> 1e-6)")
sv_diff = float(np.max(np.abs(np.load(f"{out}/pca_singular_values.npy") - pca.singular_values_)))
if sv_diff > 1e-6:
    fail(f"PCA singular values differ by {sv_diff:g} (> 1e-6)")
p_train, p_test = pca.transform(s_train), pca.transform(s_test)
worst = 0.0
for keys, p in ((train_keys, p_train), (test_keys, p_test)):
    for k, row in zip(keys, p):
        rust = np.load(f"{out}/features/pca/{k}.npy")
        worst = max(worst, float(np.max(np.abs(rust * signs - row))))
if worst > 1e-6:
    fail(f"PCA projections differ by {worst:g} up to sign (> 1e-6)")
proj_diff = worst

clf = LogisticRegression(C=1.0, tol=1e-10, max_iter=1000).fit(p_train, y_train)
sk_pred = clf.predict(p_test)
sk_acc = float(np.mean(sk_pred == y_test))
with open(f"{out}/predictions.csv", newline="") as f:
    rust = {r["key"]: r["predicted"] for r in csv.DictReader(f)}
if sorted(rust) != sorted(test_keys):
    fail("predictions.csv does not hold exactly the 75 test keys")
rust_pred = np.array([rust[k] for k in test_keys])
rust_acc = float(np.mean(rust_pred == y_test))
disagree = [k for k, a, b in zip(test_keys, rust_pred, sk_pred) if a != b]
if rust_acc != sk_acc:
    fail(f"accuracy {rust_acc} (Rust) vs {sk_acc} (scikit-learn); differing: {disagree}")
print(json.dumps({
    "scaler_max_diff": scaler_diff,
    "pca_components_max_diff": comp_diff,
    "pca_singular_values_max_diff": sv_diff,
    "pca_projection_max_diff": proj_diff,
    "accuracy_rust": rust_acc,
    "accuracy_sklearn": sk_acc,
    "predictions_differing": disagree,
    "explained_variance_ratio_sklearn": pca.explained_variance_ratio_.tolist(),
}))

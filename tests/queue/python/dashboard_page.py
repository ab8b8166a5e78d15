"""Headless Chromium for the dashboard tests (queue and forwarder): run it on a page, and
compare the figures a page shows (elements with data-stat="path.in.api") with /api/stats."""
import re
import shutil
import subprocess
import tempfile


def find_chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def headless(url, *flags, timeout=90):
    """Returns: Chromium's stdout (the DOM with --dump-dom), or None, with the reason
    printed as SKIP, when it cannot run here."""
    # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
    # --virtual-time-budget: the page's script polls /api/stats a few times first.
    args = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--virtual-time-budget=3000", *flags]
    with tempfile.TemporaryDirectory() as profile:
        try:
            r = subprocess.run(args + ["--user-data-dir=" + profile, url], capture_output=True, text=True,
                               timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            print("SKIP: chromium cannot run here: %s" % e)
            return None
    if r.returncode != 0 or ("--dump-dom" in flags and "<html" not in r.stdout):
        print("SKIP: chromium cannot run here (exit %d): %s" % (r.returncode, r.stderr.strip()[-500:]))
        return None
    return r.stdout


def lookup(doc, path):
    for k in path.split("."):
        doc = doc[k]
    return doc


def compare_figures(dom, api, check, minimum):
    """Every data-stat element of the DOM shows its /api/stats value; the script ran."""
    m = re.search(r'<body[^>]*data-rendered="(\d+)"', dom)
    check(m is not None and int(m.group(1)) >= 1, "the page's script ran and rendered /api/stats")
    shown = dict(re.findall(r'data-stat="([^"]+)"[^>]*>([^<]*)<', dom))
    check(len(shown) >= minimum, "the page shows %d figures from /api/stats (at least %d)" % (len(shown), minimum))
    wrong = {p: (v, str(lookup(api, p))) for p, v in shown.items() if v != str(lookup(api, p))}
    check(not wrong, "every figure on the page equals /api/stats: %s" % (wrong or "all equal"))

"""A runnable HyperKitty 1.3.12 site on sqlite, for the hyperkitty-bridge tests.

Run with the Python of target/hyperkitty-venv (scripts/hyperkitty-venv):

    hk_site.py setup DIR KEY          settings, urls and a migrated sqlite db in DIR
    hk_site.py serve DIR PORT         runserver 127.0.0.1:PORT --noreload, in this
                                      process (so its pid is the server's: stop it
                                      by that pid)
    hk_site.py private-list DIR ADDR  pre-create ADDR as a private list (what an
                                      operator does before the bridge posts to it)
    hk_site.py public-list DIR ADDR   make ADDR public (an admin changing its policy)
    hk_site.py emails DIR             JSON: every archived email with its list

`serve` reads HK_ALLOWED_HOSTS (comma-separated; default 127.0.0.1,localhost)
and HK_REST_AUTH_FIRST (set: the REST API answers anonymous requests 401).

The settings follow hyperkitty/tests/settings_test.py: Q_CLUSTER sync (no task
cluster), the haystack simple backend (no whoosh index), MAILMAN_ARCHIVER_FROM
loopback only, and Mailman's REST API on a closed port (HyperKitty tolerates
Mailman being unreachable, which is exactly the case where it would create an
unknown list as public).
"""

import json
import os
import sqlite3
import sys

SETTINGS = '''\
import os

from hyperkitty.tests.settings_test import *  # noqa: F401,F403

BASE_DIR = {dir!r}
DEBUG = False
# HK_ALLOWED_HOSTS (comma-separated) serves a site that refuses the bridge's
# Host header (Django's DisallowedHost: an HTML 400 for every request).
ALLOWED_HOSTS = os.environ.get("HK_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
# HK_REST_AUTH_FIRST=1: a site whose REST API wants a login first (anonymous
# requests answer 401), as some operators configure Django REST framework.
if os.environ.get("HK_REST_AUTH_FIRST"):
    REST_FRAMEWORK = {{
        "DEFAULT_AUTHENTICATION_CLASSES": [
            "rest_framework.authentication.BasicAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": [
            "rest_framework.permissions.IsAuthenticated"],
    }}
ROOT_URLCONF = "hk_urls"
# No wsgi.py: runserver then uses get_wsgi_application() itself.
WSGI_APPLICATION = None
DATABASES = {{"default": {{
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": {db!r},
    "OPTIONS": {{"timeout": 30}},
}}}}
MAILMAN_ARCHIVER_KEY = {key!r}
MAILMAN_ARCHIVER_FROM = ("127.0.0.1",)
# Port 9 (discard) is closed here: HyperKitty cannot reach a Mailman.
MAILMAN_REST_API_URL = "http://127.0.0.1:9"
HAYSTACK_CONNECTIONS = {{"default": {{
    "ENGINE": "haystack.backends.simple_backend.SimpleEngine",
}}}}
STATIC_ROOT = {static!r}
LOGGING["root"]["level"] = "WARNING"
LOGGING["loggers"]["hyperkitty"]["level"] = "INFO"
LOGGING["loggers"]["django"]["level"] = "WARNING"
'''

URLS = '''\
from django.conf.urls import include
from django.urls import path

urlpatterns = [
    path("hyperkitty/", include("hyperkitty.urls")),
    path("", include("django_mailman3.urls")),
    path("accounts/", include("allauth.urls")),
]
'''


def django(site_dir):
    sys.path.insert(0, site_dir)
    os.environ["DJANGO_SETTINGS_MODULE"] = "hk_settings"
    import django as dj
    dj.setup()


def setup(site_dir, key):
    os.makedirs(site_dir, exist_ok=True)
    with open(os.path.join(site_dir, "hk_settings.py"), "w") as f:
        f.write(SETTINGS.format(
            dir=site_dir, db=os.path.join(site_dir, "hyperkitty.db"), key=key,
            static=os.path.join(site_dir, "static")))
    with open(os.path.join(site_dir, "hk_urls.py"), "w") as f:
        f.write(URLS)
    django(site_dir)
    from django.core.management import call_command
    call_command("migrate", verbosity=0, interactive=False)


def serve(site_dir, port):
    django(site_dir)
    from django.core.management import execute_from_command_line
    execute_from_command_line(
        ["hk_site", "runserver", "127.0.0.1:%s" % port, "--noreload"])


def private_list(site_dir, address):
    django(site_dir)
    from hyperkitty.models import ArchivePolicy, MailingList
    MailingList.objects.update_or_create(
        name=address, defaults={"archive_policy": ArchivePolicy.private.value})


def public_list(site_dir, address):
    django(site_dir)
    from hyperkitty.models import ArchivePolicy, MailingList
    MailingList.objects.filter(name=address).update(
        archive_policy=ArchivePolicy.public.value)


def emails(site_dir):
    db = sqlite3.connect(os.path.join(site_dir, "hyperkitty.db"), timeout=30)
    rows = db.execute(
        "SELECT l.name, l.archive_policy, e.message_id, e.message_id_hash "
        "FROM hyperkitty_email e JOIN hyperkitty_mailinglist l "
        "ON e.mailinglist_id = l.id ORDER BY e.id").fetchall()
    lists = db.execute(
        "SELECT name, archive_policy FROM hyperkitty_mailinglist").fetchall()
    json.dump({
        "emails": [{"list": r[0], "archive_policy": r[1], "message_id": r[2],
                    "message_id_hash": r[3]} for r in rows],
        "lists": [{"name": r[0], "archive_policy": r[1]} for r in lists],
    }, sys.stdout)


def main(argv):
    command, site_dir = argv[1], os.path.abspath(argv[2])
    if command == "setup":
        setup(site_dir, argv[3])
    elif command == "serve":
        serve(site_dir, argv[3])
    elif command == "private-list":
        private_list(site_dir, argv[3])
    elif command == "public-list":
        public_list(site_dir, argv[3])
    elif command == "emails":
        emails(site_dir)
    else:
        sys.exit("unknown command %r" % command)


if __name__ == "__main__":
    main(sys.argv)

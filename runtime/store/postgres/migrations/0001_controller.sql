-- The controller's state: apps, secrets, running sessions, API keys, user and workspace
-- budgets, and spend per budget period and instance.
CREATE TABLE apps (
    workspace    TEXT NOT NULL,
    id           TEXT NOT NULL,
    manifest     TEXT NOT NULL,
    installed_at BIGINT NOT NULL,
    trusted      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (workspace, id)
);
CREATE TABLE secrets (
    workspace TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (workspace, key)
);
-- Spend per instance (its id, as in Redis): instances sharing the database never overwrite
-- each other's figures, a restarted one takes up its own, and a budget counts them all.
-- `period_secs` is the budget period's length (NULL: all time), so a figure of a period that
-- is over can be told apart without the budget that set it.
CREATE TABLE spend (
    workspace   TEXT NOT NULL,
    app_id      TEXT NOT NULL,
    scope       TEXT NOT NULL,
    instance    TEXT NOT NULL,
    period      BIGINT NOT NULL,
    period_secs BIGINT,
    micros      BIGINT NOT NULL,
    PRIMARY KEY (workspace, app_id, scope, instance)
);
CREATE TABLE budgets (
    workspace TEXT NOT NULL,
    subject   TEXT NOT NULL,
    setting   TEXT NOT NULL,
    PRIMARY KEY (workspace, subject)
);
CREATE TABLE api_keys (
    id        TEXT NOT NULL PRIMARY KEY,
    workspace TEXT NOT NULL,
    record    TEXT NOT NULL
);
CREATE TABLE sessions (
    workspace  TEXT NOT NULL,
    session_id TEXT NOT NULL,
    app_id     TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, session_id)
);

-- The spend log (one record per request) and stored Responses API answers.
CREATE TABLE spend_logs (
    id                BIGSERIAL PRIMARY KEY,
    at_ms             BIGINT NOT NULL,
    request_id        TEXT NOT NULL,
    key_id            TEXT,
    user_id           TEXT,
    workspace         TEXT NOT NULL,
    app_id            TEXT NOT NULL,
    service_id        TEXT NOT NULL,
    model             TEXT,
    deployment        TEXT,
    prompt_tokens     BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    cached_tokens     BIGINT NOT NULL,
    cost              DOUBLE PRECISION NOT NULL,
    status            INTEGER NOT NULL,
    outcome           TEXT NOT NULL,
    latency_ms        DOUBLE PRECISION NOT NULL
);
CREATE INDEX spend_logs_by_time ON spend_logs (workspace, at_ms, id);
CREATE INDEX spend_logs_expiry ON spend_logs (at_ms);
CREATE TABLE responses (
    workspace  TEXT NOT NULL,
    id         TEXT NOT NULL,
    record     TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (workspace, id)
);
CREATE INDEX responses_expiry ON responses (expires_at);

-- An office's security coordinator may withdraw its webhook
-- (PUT /v1/offices/{office}/webhook with an empty url): the runtime role
-- needs DELETE on office_webhooks for that, and on nothing else.
GRANT DELETE ON office_webhooks TO varsel_app;

-- Where a surface can reach an address it did not post to before, in the surface's
-- own terms (Teams: the serviceUrl, tenant and conversation id of a person's chat
-- with the bot or of a channel), learned from the activities it receives.
-- `address` is the outbox's target (`@<user>`, a channel id) or a surface's own key
-- (`tenant:<id>`).
CREATE TABLE conversations (
    platform   TEXT NOT NULL,
    address    TEXT NOT NULL,
    reference  TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (platform, address)
);

-- A card's newest message, delivered or not (a Teams click is answered with it).
CREATE INDEX outbox_by_card_newest ON outbox (platform, card_key, id) WHERE card_key IS NOT NULL;

-- Per-project vendor settings (JSON): signing secrets the vendors issue (Stripe whsec_, CloudPayments
-- API secret, Bitrix24 application_token...), account ids, call-tracking field mappings. They must
-- be readable to verify signatures, so whoever can read this table can read them.
ALTER TABLE projects ADD COLUMN IF NOT EXISTS vendor_config String DEFAULT '{}';

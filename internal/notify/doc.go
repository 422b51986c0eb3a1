// Package notify renders mdeflow's notifications and delivers them through
// channels, exactly once per channel as far as the store and the channel's
// acknowledgement allow.
//
// Render turns a pipeline.Notification (alert, isolation outcome, approval
// request, breaker notice, hunt digest, group digest) into a subject, a
// plain-text part and an HTML part from one embedded template set. Every
// attacker-controlled string (alert titles, descriptions, file names, command
// lines, host names, hunt rows) is sanitised first (control and bidi
// characters made visible, lengths capped) and then escaped for its output:
// html/template for HTML, RFC 2047 for mail headers (BuildMIME), Markdown
// escaping for Teams cards (BuildTeamsPayload), JSON for the webhook
// (BuildWebhookPayload). Portal links are built only from validated ids.
//
// Channels (Outbox, SMTP, GraphMail, Teams, Webhook) implement Channel and
// classify their errors with ErrTransient / ErrPermanent (*StatusError for
// HTTP answers, with Retry-After).
//
// The Dispatcher sends a notification to its target channels, recording per
// (notification, channel) state in the store table "deliveries"
// (insert-if-absent "sending", then "sent"), so a redelivered notification is
// only sent to the channels that failed. With a group window it folds alert
// notifications of one incident into a digest; see docs/notifiers/README.md.
package notify

package importer

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/stripe/stripe-go/v85"

	"github.com/cardvault/cardvault/internal/metrics"
	"github.com/cardvault/cardvault/vault"
)

// pageSize is how many customers or payment methods one Stripe list call
// asks for (Stripe's maximum).
const pageSize = 100

// flushEvery is how many customers are enumerated between two durable
// cursor updates.
const flushEvery = 25

// prepareOne leases one preparing job and enumerates its payment methods;
// it reports whether it found a job.
func (r *Runner) prepareOne(ctx context.Context) bool {
	p, ok, err := r.svc.ClaimPreparation(ctx, r.cfg.Owner, r.cfg.LeaseTTL)
	if err != nil {
		if ctx.Err() == nil {
			r.log.Error("claiming an import to prepare", "error", err)
		}
		return false
	}
	if !ok {
		return false
	}
	jc := r.remember(p.ImportCredentials)
	r.finishPreparation(ctx, p, r.enumerate(ctx, jc, p.Cursor))
	return true
}

// finishPreparation moves the job on after enumerate: to running, to
// failed for a fatal Stripe error, or back to the queue to retry.
func (r *Runner) finishPreparation(ctx context.Context, p vault.Preparation, err error) {
	log := r.log.With("import_id", p.JobID)
	if err == nil {
		err = r.svc.FinishPreparation(ctx, r.cfg.Owner, p.JobID)
	}
	if err == nil {
		log.Info("import prepared")
		r.Wake()
		return
	}
	if vault.IsImportEnded(err) || ctx.Err() != nil {
		return
	}
	if reason, fatal, _ := stripeFailure(err); fatal || isPermanent(err) {
		r.fail(p.JobID, reason)
		return
	}
	log.Warn("preparing an import failed; it will be retried", "error", err)
	if err := r.svc.ReleasePreparation(ctx, r.cfg.Owner, p.JobID); err != nil {
		log.Error("releasing an import", "error", err)
	}
}

// isPermanent reports a Stripe answer that no retry will change.
func isPermanent(err error) bool {
	var se *stripe.Error
	return errors.As(err, &se) && !retryableStatus(se.HTTPStatusCode)
}

// fail ends a job as failed with reason.
func (r *Runner) fail(jobID uuid.UUID, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.forget(jobID)
	if err := r.svc.FailImport(ctx, jobID, reason); err != nil && !vault.IsImportEnded(err) {
		r.log.Error("failing an import", "import_id", jobID, "error", err)
		return
	}
	r.log.Warn("import failed", "import_id", jobID, "reason", reason)
}

// enumerate walks the account's customers after cursor and each one's
// payment methods, recording them as items every flushEvery customers so
// that a restart resumes after the last recorded customer. Listing the
// first page is also the check that Stripe accepts the key.
func (r *Runner) enumerate(ctx context.Context, jc *jobClient, cursor string) error {
	params := &stripe.CustomerListParams{}
	params.Limit = stripe.Int64(pageSize)
	if cursor != "" {
		params.StartingAfter = stripe.String(cursor)
	}
	var found []vault.FoundItem
	n := 0
	for cus, err := range jc.stripe.V1Customers.List(ctx, params).All(ctx) {
		if err != nil {
			return err
		}
		items, err := customerItems(ctx, jc, cus.ID)
		if err != nil {
			return err
		}
		found, cursor, n = append(found, items...), cus.ID, n+1
		if n%flushEvery == 0 {
			if err := r.recordFound(ctx, jc.creds.JobID, found, cursor); err != nil {
				return err
			}
			r.Wake() // the forwarders start on what was found while the listing goes on
			found = nil
		}
	}
	return r.recordFound(ctx, jc.creds.JobID, found, cursor)
}

// recordFound records the items found up to cursor as the job's and counts
// the skipped ones in the metrics. It returns the queue's error.
func (r *Runner) recordFound(ctx context.Context, jobID uuid.UUID, found []vault.FoundItem, cursor string) error {
	if err := r.svc.RecordFound(ctx, r.cfg.Owner, jobID, found, cursor, r.cfg.LeaseTTL); err != nil {
		return err
	}
	skipped := 0
	for _, it := range found {
		if it.SkipReason != "" {
			skipped++
		}
	}
	r.cfg.Metrics.Items(metrics.ItemSkipped, skipped)
	return nil
}

// customerItems lists a customer's payment methods of every type: cards
// become items to import, Link and other types are recorded as skipped.
// Each page is decoded into listedPaymentMethod, the three fields read
// here, rather than stripe-go's PaymentMethod: decoding every field of
// every type of payment method was most of what listing cost the vault
// (0.45 of 0.52 s of CPU for 10,000 cards; docs/performance.md).
func customerItems(ctx context.Context, jc *jobClient, customer string) ([]vault.FoundItem, error) {
	path := stripe.FormatURLPath("/v1/customers/%s/payment_methods", customer)
	var items []vault.FoundItem
	after := ""
	for {
		page, err := jc.paymentMethodPage(ctx, path, after)
		if err != nil {
			return nil, err
		}
		for _, pm := range page.Data {
			items = append(items, vault.FoundItem{PaymentMethod: pm.ID, Customer: customer, SkipReason: skipReason(pm)})
		}
		if !page.HasMore || len(page.Data) == 0 {
			return items, nil
		}
		after = page.Data[len(page.Data)-1].ID
	}
}

// paymentMethodPage is one page of a customer's payment methods.
type paymentMethodPage struct {
	stripe.APIResource
	Data    []listedPaymentMethod `json:"data"`
	HasMore bool                  `json:"has_more"`
}

// listedPaymentMethod is what the importer reads of a listed payment
// method: its id, its type and, for a card, the wallet it is saved in.
type listedPaymentMethod struct {
	ID   string                   `json:"id"`
	Type stripe.PaymentMethodType `json:"type"`
	Card *struct {
		Wallet *struct {
			Type stripe.PaymentMethodCardWalletType `json:"type"`
		} `json:"wallet"`
	} `json:"card"`
}

// paymentMethodPage asks Stripe, through stripe-go's backend (its
// authentication, errors and this runner's retries and rate limit), for the
// page of path's list after the payment method after ("" for the first). It
// returns stripe-go's error.
func (jc *jobClient) paymentMethodPage(ctx context.Context, path, after string) (*paymentMethodPage, error) {
	q := url.Values{"limit": {strconv.Itoa(pageSize)}}
	if after != "" {
		q.Set("starting_after", after)
	}
	page := &paymentMethodPage{}
	err := jc.backend.CallRaw(http.MethodGet, path, jc.creds.ProviderKey.Reveal(), []byte(q.Encode()), &stripe.Params{Context: ctx}, page)
	return page, err
}

// skipReason says why a payment method cannot be imported, or "" for a card
// that can. A card saved in a wallet (card.wallet set: Apple Pay, Google
// Pay, Link…) holds a device or network token, not a number Stripe can
// forward, so it is skipped with the wallet named instead of spending
// attempts on forwards Stripe refuses.
func skipReason(pm listedPaymentMethod) string {
	switch pm.Type {
	case stripe.PaymentMethodTypeCard:
		if pm.Card != nil && pm.Card.Wallet != nil {
			return fmt.Sprintf("card saved in %s (a wallet) cannot be forwarded as a card number", walletName(pm.Card.Wallet.Type))
		}
		return ""
	case stripe.PaymentMethodTypeLink:
		return "link payment methods cannot be forwarded"
	}
	return fmt.Sprintf("not a card (type %s)", pm.Type)
}

// walletNames are the wallets' names as people know them.
var walletNames = map[stripe.PaymentMethodCardWalletType]string{
	stripe.PaymentMethodCardWalletTypeApplePay:            "Apple Pay",
	stripe.PaymentMethodCardWalletTypeGooglePay:           "Google Pay",
	stripe.PaymentMethodCardWalletTypeLink:                "Link",
	stripe.PaymentMethodCardWalletTypeSamsungPay:          "Samsung Pay",
	stripe.PaymentMethodCardWalletTypeMasterpass:          "Masterpass",
	stripe.PaymentMethodCardWalletTypeVisaCheckout:        "Visa Checkout",
	stripe.PaymentMethodCardWalletTypeAmexExpressCheckout: "Amex Express Checkout",
}

// walletName returns a wallet type's name, or the type itself for one not
// listed ("unknown" when empty).
func walletName(t stripe.PaymentMethodCardWalletType) string {
	if n, ok := walletNames[t]; ok {
		return n
	}
	if t == "" {
		return "unknown"
	}
	return string(t)
}

"""The payment-form builder: signed `vads_*` forms for a merchant's checkout, by `cvco-ipn form` or the
receiver's `POST /forms`; it allocates the transaction id and starts watching the session."""

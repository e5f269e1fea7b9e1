"""The CVCO authorisation results (`vads_auth_result`), from the seed guide §11.3, with their message."""

from __future__ import annotations

AUTH_RESULTS: dict[str, str] = {
    "0": "Paiement accepté",
    "1010": "Rejet par le processus d'acquisition du paiement en CVCo",
    "1011": "Rejet par le processus d'acquisition du complément de paiement",
    "1012": "Abandon par le payeur lors du paiement en CVCo",
    "1013": "Abandon par le payeur lors du complément de paiement",
    "1014": "Transaction remboursée suite à une demande du commerçant",
    "1015": "La transaction a expiré",
    "1016": "Défaut d'équipement de paiement du bénéficiaire (bloqué ou non enrôlé)",
    "1017": "Rejet lors des vérifications de sécurité du bénéficiaire",
    "1018": "Rejet causé par un défaut d'action du bénéficiaire",
    "1019": "Rejet par le processus d'acquisition du paiement en CVCo",
    "1020": "Abandon par le payeur lors du paiement en CVCo",
    "1100": "Etat de transaction ANCV inconnu",
    "1213": "Le marchand n'est pas autorisé",
    "1214": "L'opération sur la transaction n'est pas autorisée",
    "1215": "L'opération sur le montant de la pré-transaction n'est pas autorisée",
    "1216": "Le solde est insuffisant",
    "1218": "Le bénéficiaire n'a pas été trouvé",
    "1220": "Une autre transaction est en cours",
    "1300": "Erreur non référencée",
}
UNKNOWN_CODE = "code inconnu"
NO_CODE = "aucun résultat d'autorisation"
SESSION_EXPIRED = "session de paiement expirée sans notification"


def auth_message(code: str | None) -> str:
    """The seed's French message for a code; the platform may pad it (`00`), so leading zeros are ignored."""
    if code is None:
        return NO_CODE
    normalized = code.lstrip("0") or "0"
    return AUTH_RESULTS.get(normalized, UNKNOWN_CODE)

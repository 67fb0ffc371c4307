//! Envelope encryption of travelers' personal data.
//!
//! Each tenant has numbered data keys; the newest seals new cases, every version stays readable.
//! A data key is stored only wrapped by a key-encryption key (KEK) from configuration, so a
//! database dump without the configuration reveals nothing. Rotating the KEK rewraps the data
//! keys at start-up ([`PersonalDataKeys::rewrap`]); the sealed fields are never re-encrypted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use detour_audit::Audit;
use detour_domain::{CaseId, PersonalData, TravelerId, time};
use detour_vault::{DataKey, KeyRing, Secret, WrappedKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::error::IntakeError;
use crate::model::{SealedPersonal, StoredDataKey};
use crate::repo::IntakeRepository;

/// What the data keys look like after [`PersonalDataKeys::rewrap`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RewrapReport {
    pub keys: usize,
    pub rewrapped: usize,
}

pub struct PersonalDataKeys {
    ring: KeyRing,
    tenant: String,
    repo: Arc<dyn IntakeRepository>,
    /// Unwrapped data keys by (tenant, version): unwrapping is cheap, but a list of 500 cases
    /// should not do it 500 times.
    cache: Mutex<HashMap<(String, i64), Arc<DataKey>>>,
    /// The version new cases are sealed with. Versions are only ever added when a tenant has
    /// none, so once known it holds for the life of the process and sealing needs no query.
    current: Mutex<Option<(i64, Arc<DataKey>)>>,
}

/// The plain form sealed into `cases.personal_data`. Short field names keep the blob small.
#[derive(Serialize, Deserialize, Zeroize)]
struct Plain {
    n: String,
    e: Option<String>,
    p: Option<String>,
    d: Option<String>,
}

fn wrap_context(tenant: &str, version: i64) -> Vec<u8> {
    format!("detour.intake.data-key.v1|{tenant}|{version}").into_bytes()
}

/// Binds a sealed blob to its row: copied onto another case (or traveler) it no longer opens.
fn seal_context(tenant: &str, owner: Owner) -> Vec<u8> {
    match owner {
        Owner::Case(case) => format!("detour.intake.personal.v1|{tenant}|{case}").into_bytes(),
        Owner::Traveler(t) => format!("detour.intake.traveler.v1|{tenant}|{t}").into_bytes(),
    }
}

/// The row a sealed blob belongs to: a case's copy, or the itinerary registry's traveler.
#[derive(Debug, Clone, Copy)]
pub enum Owner {
    Case(CaseId),
    Traveler(TravelerId),
}

/// What a lookup index is computed over.
#[derive(Debug, Clone, Copy)]
pub enum Handle {
    Email,
    Phone,
}

impl PersonalDataKeys {
    pub fn new(ring: KeyRing, tenant: impl Into<String>, repo: Arc<dyn IntakeRepository>) -> Self {
        Self {
            ring,
            tenant: tenant.into(),
            repo,
            cache: Mutex::new(HashMap::new()),
            current: Mutex::new(None),
        }
    }

    fn cached(&self, tenant: &str, version: i64) -> Option<Arc<DataKey>> {
        self.cache.lock().ok()?.get(&(tenant.to_owned(), version)).cloned()
    }

    fn remember(&self, tenant: &str, version: i64, key: DataKey) -> Arc<DataKey> {
        let key = Arc::new(key);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert((tenant.to_owned(), version), key.clone());
        }
        key
    }

    fn unwrap_stored(&self, stored: &StoredDataKey) -> Result<DataKey, IntakeError> {
        let wrapped = WrappedKey { kek_id: stored.kek_id.clone(), ciphertext: stored.wrapped.clone() };
        Ok(self.ring.unwrap(&wrapped, &wrap_context(&stored.tenant, stored.version))?)
    }

    async fn key(&self, tenant: &str, version: i64) -> Result<Arc<DataKey>, IntakeError> {
        if let Some(key) = self.cached(tenant, version) {
            return Ok(key);
        }
        let stored = self
            .repo
            .data_keys(tenant)
            .await?
            .into_iter()
            .find(|k| k.version == version)
            .ok_or_else(|| IntakeError::DataKeyMissing { tenant: tenant.to_owned(), version })?;
        let key = self.unwrap_stored(&stored)?;
        Ok(self.remember(tenant, version, key))
    }

    /// The newest data key of this deployment's tenant, made on first use.
    async fn current(&self) -> Result<(i64, Arc<DataKey>), IntakeError> {
        if let Some(current) = self.current.lock().ok().and_then(|c| c.clone()) {
            return Ok(current);
        }
        let newest = self.repo.data_keys(&self.tenant).await?.into_iter().max_by_key(|k| k.version);
        let current = match newest {
            Some(stored) => {
                let key = self.unwrap_stored(&stored)?;
                (stored.version, self.remember(&self.tenant, stored.version, key))
            }
            None => (1, self.create_first().await?),
        };
        if let Ok(mut slot) = self.current.lock() {
            *slot = Some(current.clone());
        }
        Ok(current)
    }

    /// Makes the tenant's first data key; when another replica got there first, uses theirs.
    async fn create_first(&self) -> Result<Arc<DataKey>, IntakeError> {
        let key = DataKey::generate()?;
        let wrapped = self.ring.wrap(&key, &wrap_context(&self.tenant, 1))?;
        let stored = StoredDataKey {
            tenant: self.tenant.clone(),
            version: 1,
            kek_id: wrapped.kek_id,
            wrapped: wrapped.ciphertext,
            created_at: time::now(),
        };
        let audit = Audit::of_service(crate::NAME, "create data key");
        if self.repo.add_data_key(&stored, &audit).await? {
            return Ok(self.remember(&self.tenant, 1, key));
        }
        self.key(&self.tenant, 1).await
    }

    /// Rewraps every stored data key (all tenants) not wrapped by the primary KEK, so that the
    /// KEKs being rotated out can leave the configuration. Safe to run on several replicas at
    /// once: a key is rewrapped only if still wrapped by the KEK it was read with.
    pub async fn rewrap(&self) -> Result<RewrapReport, IntakeError> {
        let audit = Audit::of_service(crate::NAME, "rewrap data key");
        let keys = self.repo.all_data_keys().await?;
        let mut rewrapped = 0;
        for stored in &keys {
            let wrapped = WrappedKey { kek_id: stored.kek_id.clone(), ciphertext: stored.wrapped.clone() };
            if !self.ring.needs_rewrap(&wrapped) {
                continue;
            }
            let new = self.ring.rewrap(&wrapped, &wrap_context(&stored.tenant, stored.version))?;
            if self.repo.rewrap_data_key(stored, &new.kek_id, &new.ciphertext, &audit).await? {
                rewrapped += 1;
            }
        }
        Ok(RewrapReport { keys: keys.len(), rewrapped })
    }

    /// A keyed index of a traveler's e-mail or phone (already normalised by validation), for
    /// finding the traveler by it. Always under the tenant's first data key, so indexes stay
    /// comparable when newer data keys seal new data.
    pub async fn lookup_index(&self, handle: Handle, value: &str) -> Result<String, IntakeError> {
        self.current().await?;
        let key = self.key(&self.tenant, 1).await?;
        let context: &[u8] = match handle {
            Handle::Email => b"email",
            Handle::Phone => b"phone",
        };
        Ok(detour_vault::blind_index(&key, context, value.as_bytes()))
    }

    /// The id of a traveler the registry does not know, from their name and phone (else
    /// e-mail): the same person writing again about the same trip gets the same id, so the
    /// contact joins the case their first one opened; two people sharing a phone do not. Keyed
    /// like the blind indexes (version 1 of the tenant's key), so without the key the id tells
    /// nothing of the data. `None` without a phone or e-mail.
    pub async fn walk_in_id(&self, personal: &PersonalData) -> Result<Option<TravelerId>, IntakeError> {
        let handle = match (personal.phone(), personal.email()) {
            (Some(phone), _) => format!("phone:{phone}"),
            (None, Some(email)) => format!("email:{}", email.to_lowercase()),
            (None, None) => return Ok(None),
        };
        // Spacing and case are how a name was typed, not who it names.
        let name = personal.full_name().split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
        self.current().await?;
        let key = self.key(&self.tenant, 1).await?;
        // A handle has no line break, so the two parts cannot run into each other.
        let digest = detour_vault::blind_bytes(&key, b"walk-in", format!("{handle}\n{name}").as_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Ok(Some(TravelerId::derived(bytes)))
    }

    pub async fn seal(&self, case: CaseId, personal: &PersonalData) -> Result<SealedPersonal, IntakeError> {
        self.seal_for(Owner::Case(case), personal).await
    }

    pub async fn open(&self, case: CaseId, sealed: &SealedPersonal) -> Result<PersonalData, IntakeError> {
        self.open_for(Owner::Case(case), sealed).await
    }

    pub async fn seal_for(
        &self,
        owner: Owner,
        personal: &PersonalData,
    ) -> Result<SealedPersonal, IntakeError> {
        let (version, key) = self.current().await?;
        let mut plain = Plain {
            n: personal.full_name().to_owned(),
            e: personal.email().map(str::to_owned),
            p: personal.phone().map(str::to_owned),
            d: personal.document_number().map(str::to_owned),
        };
        let json = serde_json::to_vec(&plain);
        plain.zeroize();
        // serde's messages can quote the value; none of it may reach a log.
        let mut json = json.map_err(|_| {
            IntakeError::Storage(detour_storage::decode::corrupt("personal data did not encode"))
        })?;
        let sealed = detour_vault::seal(&key, &json, &seal_context(&self.tenant, owner));
        json.zeroize();
        Ok(SealedPersonal { tenant: self.tenant.clone(), key_version: version, ciphertext: sealed? })
    }

    pub async fn open_for(&self, owner: Owner, sealed: &SealedPersonal) -> Result<PersonalData, IntakeError> {
        let key = self.key(&sealed.tenant, sealed.key_version).await?;
        let mut json = detour_vault::open(&key, &sealed.ciphertext, &seal_context(&sealed.tenant, owner))?;
        let plain: Result<Plain, _> = serde_json::from_slice(&json);
        json.zeroize();
        let plain = plain.map_err(|_| {
            IntakeError::Storage(detour_storage::decode::corrupt("sealed personal data is not valid"))
        })?;
        let Plain { n, e, p, d } = plain;
        Ok(PersonalData {
            full_name: Secret::new(n),
            email: e.map(Secret::new),
            phone: p.map(Secret::new),
            document_number: d.map(Secret::new),
        })
    }
}

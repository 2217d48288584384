//! Kubernetes manifests of a served model: a KServe `InferenceService` or a
//! Seldon Core v1 `SeldonDeployment`, built as typed JSON values (never text
//! templates) and written as YAML. Rendering is pure and deterministic: the
//! same model on the same stack gives the same bytes, so a promotion that
//! changes nothing changes no file, and a new model edits the one manifest
//! of its service in place.

use serde_json::{Map, Value, json};

use crate::error::{Error, ManifestError};
use crate::spec::types::{ModelDeployerType, Resources};

/// The default KServe model format (`modelFormat.name`).
pub const DEFAULT_KSERVE_FORMAT: &str = "sklearn";
/// The default Seldon prepackaged server (`implementation`).
pub const DEFAULT_SELDON_SERVER: &str = "SKLEARN_SERVER";
/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Everything a manifest says about one served model.
#[derive(Debug, Clone)]
pub struct ManifestInput<'a> {
    /// The service name: the object's name, so an update replaces it.
    pub name: &'a str,
    pub namespace: &'a str,
    pub stack: &'a str,
    pub pipeline: &'a str,
    /// The promoted output, `STEP.OUTPUT`, recorded as an annotation.
    pub model_output: &'a str,
    /// The model's content digest, recorded as an annotation.
    pub digest: &'a str,
    /// Where the model server downloads the model from.
    pub storage_uri: &'a str,
    /// KServe's `modelFormat.name` or Seldon's `implementation` (defaults above).
    pub runtime: Option<&'a str>,
    pub replicas: u32,
    pub resources: Option<&'a Resources>,
}

/// The repo path of a service's manifest: `DIR/SERVICE.yaml`, where DIR is
/// the stack's `manifests_dir` (default `manifests/STACK`).
pub fn manifest_file(manifests_dir: Option<&str>, stack: &str, service: &str) -> String {
    let dir = match manifests_dir {
        Some(dir) => dir.trim_end_matches('/').to_string(),
        None => format!("manifests/{stack}"),
    };
    format!("{dir}/{service}.yaml")
}

/// The model's address in the artifact store as the cluster sees it:
/// `URL/objects/AB/CDEF...`, the layout of runner's content-addressed store.
pub fn storage_uri(store_url: Option<&str>, digest: &str) -> Result<String, ManifestError> {
    let url = store_url.ok_or(ManifestError::NoStoreUrl)?;
    if !crate::cache::store::is_digest(digest) {
        return Err(ManifestError::NotADigest {
            digest: digest.to_string(),
        });
    }
    Ok(format!(
        "{}/{}",
        url.trim_end_matches('/'),
        crate::cache::store::object_rel(digest)
    ))
}

/// Kubernetes object names (RFC 1035 labels): KServe and Seldon derive
/// Service and host names from them.
pub fn check_object_name(name: &str) -> Result<(), ManifestError> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    match valid {
        true => Ok(()),
        false => Err(ManifestError::BadObjectName {
            name: name.to_string(),
        }),
    }
}

/// The manifest of `kind` (`kserve` or `seldon`).
pub fn render(kind: ModelDeployerType, input: &ManifestInput) -> Value {
    match kind {
        ModelDeployerType::Seldon => seldon(input),
        _ => kserve(input),
    }
}

/// The labels and annotations every manifest carries: who manages it, and
/// which model it serves.
fn metadata(input: &ManifestInput) -> Value {
    json!({
        "name": input.name,
        "namespace": input.namespace,
        "labels": {
            "app.kubernetes.io/name": input.name,
            "app.kubernetes.io/managed-by": "runner",
            "runner.dev/stack": label_value(input.stack),
            "runner.dev/pipeline": label_value(input.pipeline),
        },
        "annotations": {
            "runner.dev/model-digest": input.digest,
            "runner.dev/model-output": input.model_output,
        },
    })
}

/// A label value: at most 63 characters.
fn label_value(value: &str) -> String {
    value
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches(['-', '_', '.'])
        .to_string()
}

/// `resources` as Kubernetes writes them; `None` when the stack sets none.
fn resources(resources: Option<&Resources>) -> Option<Value> {
    let resources = resources?;
    let value = serde_json::to_value(resources).ok()?;
    match value.as_object().is_some_and(Map::is_empty) {
        true => None,
        false => Some(value),
    }
}

/// A KServe `InferenceService` (serving.kserve.io/v1beta1) with one predictor.
pub fn kserve(input: &ManifestInput) -> Value {
    let mut model = json!({
        "modelFormat": {"name": input.runtime.unwrap_or(DEFAULT_KSERVE_FORMAT)},
        "storageUri": input.storage_uri,
    });
    if let (Some(resources), Some(model)) = (resources(input.resources), model.as_object_mut()) {
        model.insert("resources".to_string(), resources);
    }
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": metadata(input),
        "spec": {
            "predictor": {
                "minReplicas": input.replicas,
                "maxReplicas": input.replicas.max(1),
                "model": model,
            },
        },
    })
}

/// A Seldon Core v1 `SeldonDeployment` (machinelearning.seldon.io/v1) with
/// one predictor running a prepackaged model server.
pub fn seldon(input: &ManifestInput) -> Value {
    let mut predictor = json!({
        "name": "default",
        "replicas": input.replicas,
        "graph": {
            "name": "model",
            "type": "MODEL",
            "implementation": input.runtime.unwrap_or(DEFAULT_SELDON_SERVER),
            "modelUri": input.storage_uri,
            "children": [],
        },
    });
    if let (Some(resources), Some(predictor)) =
        (resources(input.resources), predictor.as_object_mut())
    {
        predictor.insert(
            "componentSpecs".to_string(),
            json!([{"spec": {"containers": [{"name": "model", "resources": resources}]}}]),
        );
    }
    json!({
        "apiVersion": "machinelearning.seldon.io/v1",
        "kind": "SeldonDeployment",
        "metadata": metadata(input),
        "spec": {
            "name": input.name,
            "predictors": [predictor],
        },
    })
}

/// The manifest as the YAML file runner commits.
pub fn to_yaml(service: &str, manifest: &Value) -> Result<String, Error> {
    let yaml = serde_saphyr::to_string(manifest).map_err(|e| Error::Service {
        name: service.to_string(),
        message: format!("cannot write the manifest: {e}"),
    })?;
    Ok(format!(
        "# Written by runner on promotion; Argo CD or Flux applies it. Edits are replaced by the next promotion.\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::types::Quantities;

    fn input<'a>(resources: Option<&'a Resources>) -> ManifestInput<'a> {
        ManifestInput {
            name: "svc",
            namespace: "ml",
            stack: "prod",
            pipeline: "p",
            model_output: "train.model",
            digest: "blake3:abcdef",
            storage_uri: "s3://b/c/objects/ab/cdef",
            runtime: None,
            replicas: 2,
            resources,
        }
    }

    #[test]
    fn storage_uri_is_the_content_address() {
        let digest = format!("blake3:0123{}", "a".repeat(60));
        assert_eq!(
            storage_uri(Some("s3://bucket/cache/"), &digest).unwrap(),
            format!("s3://bucket/cache/objects/01/23{}", "a".repeat(60))
        );
        assert!(storage_uri(Some("s3://b"), "blake3:../x").is_err());
        assert!(
            storage_uri(None, "blake3:0123")
                .unwrap_err()
                .to_string()
                .contains("artifact_store.url")
        );
    }

    #[test]
    fn object_names_follow_kubernetes() {
        assert!(check_object_name("customer-satisfaction").is_ok());
        for bad in ["Svc", "svc_1", "1svc", "svc-", "a.b", ""] {
            assert!(check_object_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn manifests_carry_the_model_replicas_and_resources() {
        let resources = Resources {
            requests: Some(Quantities {
                cpu: Some("500m".into()),
                memory: Some("1Gi".into()),
            }),
            limits: None,
        };
        let k = kserve(&input(Some(&resources)));
        assert_eq!(k["spec"]["predictor"]["minReplicas"], 2);
        assert_eq!(
            k["spec"]["predictor"]["model"]["storageUri"],
            "s3://b/c/objects/ab/cdef"
        );
        assert_eq!(
            k["spec"]["predictor"]["model"]["resources"]["requests"]["cpu"],
            "500m"
        );
        let s = seldon(&input(None));
        assert_eq!(
            s["spec"]["predictors"][0]["graph"]["implementation"],
            "SKLEARN_SERVER"
        );
        assert!(s["spec"]["predictors"][0].get("componentSpecs").is_none());
        assert_eq!(
            s["metadata"]["annotations"]["runner.dev/model-digest"],
            "blake3:abcdef"
        );
    }

    #[test]
    fn manifest_files_are_per_service() {
        assert_eq!(
            manifest_file(None, "prod", "svc"),
            "manifests/prod/svc.yaml"
        );
        assert_eq!(manifest_file(Some("k8s/"), "prod", "svc"), "k8s/svc.yaml");
    }
}

//! Certificates and keys the control plane needs, generated in-process (rcgen, ECDSA P-256):
//! a CA, the API server's serving certificate, client certificates for the admin and the
//! controller manager, and the ServiceAccount token signing key.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::Error;

/// Paths of the PEM files written into the control plane's directory.
#[derive(Debug, Clone)]
pub(crate) struct CertFiles {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    pub kcm_cert: PathBuf,
    pub kcm_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    /// The node's identities (node mode only).
    pub node: Option<NodeCerts>,
    /// The node's IP (node mode only).
    pub node_ip: Option<String>,
}

/// Certificates of a node's components: the kubelet (client and serving), kube-scheduler,
/// kube-proxy, and the API server's client certificate for the kubelet (logs, exec).
#[derive(Debug, Clone)]
pub(crate) struct NodeCerts {
    pub kubelet_cert: PathBuf,
    pub kubelet_key: PathBuf,
    pub kubelet_serving_cert: PathBuf,
    pub kubelet_serving_key: PathBuf,
    pub scheduler_cert: PathBuf,
    pub scheduler_key: PathBuf,
    pub proxy_cert: PathBuf,
    pub proxy_key: PathBuf,
    pub apiserver_kubelet_cert: PathBuf,
    pub apiserver_kubelet_key: PathBuf,
}

fn cert_err(e: rcgen::Error) -> Error {
    Error::Certs(e.to_string())
}

fn write(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::io(format!("writing {}", path.display()), e))
}

fn client_params(
    common_name: &str,
    organization: Option<&str>,
) -> Result<CertificateParams, Error> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    Ok(params)
}

/// Generates everything into `dir`; with `node` (the node's name and IP), also the node's
/// certificates, and the API server's serving certificate names that IP.
pub(crate) fn generate(dir: &Path, node: Option<(&str, &str)>) -> Result<CertFiles, Error> {
    let mut files = CertFiles::in_dir(dir);
    let ca = write_ca(&files)?;
    write_serving(&files, &ca, node.map(|(_, ip)| ip))?;
    write_clients(&files, &ca)?;
    if let Some((name, ip)) = node {
        files.node = Some(write_node(dir, &ca, name, ip)?);
        files.node_ip = Some(ip.to_string());
    }
    // ServiceAccount tokens are signed ES256; the API server accepts EC keys as well as RSA.
    let sa = KeyPair::generate().map_err(cert_err)?;
    write(&files.sa_key, &sa.serialize_pem())?;
    write(&files.sa_pub, &sa.public_key_pem())?;
    Ok(files)
}

impl CertFiles {
    fn in_dir(dir: &Path) -> Self {
        CertFiles {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            kcm_cert: dir.join("kcm.crt"),
            kcm_key: dir.join("kcm.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
            node: None,
            node_ip: None,
        }
    }
}

/// The self-signed CA, written out and returned to sign the rest.
fn write_ca(files: &CertFiles) -> Result<CertifiedIssuer<'static, KeyPair>, Error> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(cert_err)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stallwatch-envtest-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate().map_err(cert_err)?;
    let ca_key_pem = ca_key.serialize_pem();
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(cert_err)?;
    write(&files.ca_cert, &ca.pem())?;
    write(&files.ca_key, &ca_key_pem)?;
    Ok(ca)
}

/// The API server's serving certificate.
fn write_serving(
    files: &CertFiles,
    ca: &CertifiedIssuer<'static, KeyPair>,
    node_ip: Option<&str>,
) -> Result<(), Error> {
    // Serving: loopback plus the in-cluster names, in case anything resolves them.
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "10.96.0.1".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ];
    // Node mode: pods reach the API server on the node's bridge address.
    names.extend(node_ip.map(str::to_string));
    let mut serving = CertificateParams::new(names).map_err(cert_err)?;
    serving
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let serving_key = KeyPair::generate().map_err(cert_err)?;
    let cert = serving.signed_by(&serving_key, ca).map_err(cert_err)?;
    write(&files.serving_cert, &cert.pem())?;
    write(&files.serving_key, &serving_key.serialize_pem())?;
    Ok(())
}

/// Client certificates: the admin (system:masters) and the controller manager.
fn write_clients(files: &CertFiles, ca: &CertifiedIssuer<'static, KeyPair>) -> Result<(), Error> {
    for (common_name, org, cert_path, key_path) in [
        (
            "stallwatch-envtest-admin",
            Some("system:masters"),
            &files.admin_cert,
            &files.admin_key,
        ),
        (
            "system:kube-controller-manager",
            None,
            &files.kcm_cert,
            &files.kcm_key,
        ),
    ] {
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = client_params(common_name, org)?
            .signed_by(&key, ca)
            .map_err(cert_err)?;
        write(cert_path, &cert.pem())?;
        write(key_path, &key.serialize_pem())?;
    }
    Ok(())
}

/// The node's certificates (see [`NodeCerts`]).
fn write_node(
    dir: &Path,
    ca: &CertifiedIssuer<'static, KeyPair>,
    node: &str,
    ip: &str,
) -> Result<NodeCerts, Error> {
    let files = NodeCerts {
        kubelet_cert: dir.join("kubelet.crt"),
        kubelet_key: dir.join("kubelet.key"),
        kubelet_serving_cert: dir.join("kubelet-serving.crt"),
        kubelet_serving_key: dir.join("kubelet-serving.key"),
        scheduler_cert: dir.join("scheduler.crt"),
        scheduler_key: dir.join("scheduler.key"),
        proxy_cert: dir.join("proxy.crt"),
        proxy_key: dir.join("proxy.key"),
        apiserver_kubelet_cert: dir.join("apiserver-kubelet.crt"),
        apiserver_kubelet_key: dir.join("apiserver-kubelet.key"),
    };
    let node_cn = format!("system:node:{node}");
    // The node authorizer knows a kubelet by CN system:node:<name>, O system:nodes.
    for (common_name, org, cert_path, key_path) in [
        (
            node_cn.as_str(),
            Some("system:nodes"),
            &files.kubelet_cert,
            &files.kubelet_key,
        ),
        (
            "system:kube-scheduler",
            None,
            &files.scheduler_cert,
            &files.scheduler_key,
        ),
        (
            "system:kube-proxy",
            None,
            &files.proxy_cert,
            &files.proxy_key,
        ),
        (
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            &files.apiserver_kubelet_cert,
            &files.apiserver_kubelet_key,
        ),
    ] {
        let key = KeyPair::generate().map_err(cert_err)?;
        let cert = client_params(common_name, org)?
            .signed_by(&key, ca)
            .map_err(cert_err)?;
        write(cert_path, &cert.pem())?;
        write(key_path, &key.serialize_pem())?;
    }
    let mut serving =
        CertificateParams::new(vec![ip.to_string(), node.to_string()]).map_err(cert_err)?;
    serving.distinguished_name.push(DnType::CommonName, node);
    serving.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = serving.signed_by(&key, ca).map_err(cert_err)?;
    write(&files.kubelet_serving_cert, &cert.pem())?;
    write(&files.kubelet_serving_key, &key.serialize_pem())?;
    Ok(files)
}

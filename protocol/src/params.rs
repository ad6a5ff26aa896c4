//! Parameter sets: the ordered, named f32 tensors a model is made of.
//!
//! The aggregator is model-agnostic: everything it knows about a model is a
//! [`ParameterSet`]. Each tensor carries a [`Scope`]: shared tensors take part in
//! federated averaging, private ones (a recommender's user embeddings) never leave
//! the node. [`ParameterSet::shared`] is the only view that is ever put on the wire.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Whether a tensor leaves the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Averaged across the federation.
    Shared,
    /// Stays in the node's own store; never sent.
    Private,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Scope::Shared => "shared",
            Scope::Private => "private",
        }
    }
}

/// One named tensor: row-major f32 values and their shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tensor {
    /// Unique name within its set, e.g. `item_embedding`.
    pub name: String,
    /// Dimensions, outermost first. A scalar has shape `[]` and one value.
    pub shape: Vec<usize>,
    /// Row-major values; `values.len()` equals the product of `shape`.
    pub values: Vec<f32>,
    /// Whether the tensor leaves the node.
    pub scope: Scope,
}

/// The name, shape and scope of one tensor: what two sets must agree on to be combined.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorSpec {
    /// Tensor name.
    pub name: String,
    /// Tensor shape.
    pub shape: Vec<usize>,
    /// Tensor scope.
    pub scope: Scope,
}

impl TensorSpec {
    /// Number of f32 values the tensor holds.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with a zero-sized dimension.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Errors building, combining or decoding parameter sets.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParameterError {
    /// A tensor's values do not fill its shape.
    #[error("tensor `{name}`: shape {shape:?} holds {expected} values but {actual} were given")]
    ShapeMismatch {
        /// Tensor name.
        name: String,
        /// Declared shape.
        shape: Vec<usize>,
        /// Product of the shape.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// Two tensors share a name.
    #[error("tensor `{0}` appears twice in one parameter set")]
    DuplicateName(String),
    /// A set does not have the tensors, shapes or order another expects.
    #[error("parameter set does not match the expected layout: {0}")]
    LayoutMismatch(String),
    /// A flat vector's length differs from the layout's total.
    #[error("flat vector has {actual} values but the layout needs {expected}")]
    FlatLength {
        /// Values the layout needs.
        expected: usize,
        /// Values given.
        actual: usize,
    },
    /// A value is NaN or infinite.
    #[error("tensor `{name}` has a non-finite value at index {index}")]
    NonFinite {
        /// Tensor name.
        name: String,
        /// Flat index within the tensor.
        index: usize,
    },
    /// A safetensors file could not be read or written.
    #[error("safetensors: {0}")]
    Safetensors(String),
}

/// An ordered list of uniquely named tensors.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ParameterSet {
    tensors: Vec<Tensor>,
}

/// Metadata key prefix under which a tensor's scope is kept in safetensors files.
const SCOPE_KEY_PREFIX: &str = "hansa.scope.";
/// Metadata key that keeps the tensor order (safetensors itself sorts by name).
const ORDER_KEY: &str = "hansa.order";

impl ParameterSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a tensor, checking that its values fill its shape and its name is new.
    pub fn push(
        &mut self,
        name: impl Into<String>,
        shape: Vec<usize>,
        values: Vec<f32>,
        scope: Scope,
    ) -> Result<(), ParameterError> {
        let name = name.into();
        let expected: usize = shape.iter().product();
        if expected != values.len() {
            return Err(ParameterError::ShapeMismatch {
                name,
                shape,
                expected,
                actual: values.len(),
            });
        }
        if self.get(&name).is_some() {
            return Err(ParameterError::DuplicateName(name));
        }
        self.tensors.push(Tensor {
            name,
            shape,
            values,
            scope,
        });
        Ok(())
    }

    /// Builds a set from tensors, applying the same checks as [`ParameterSet::push`].
    pub fn from_tensors(tensors: Vec<Tensor>) -> Result<Self, ParameterError> {
        let mut set = Self::new();
        for t in tensors {
            set.push(t.name, t.shape, t.values, t.scope)?;
        }
        Ok(set)
    }

    /// The tensors in order.
    pub fn tensors(&self) -> &[Tensor] {
        &self.tensors
    }

    /// Mutable access to the tensors' values (names, shapes and scopes stay fixed).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut [f32]> {
        self.tensors.iter_mut().map(|t| t.values.as_mut_slice())
    }

    /// Consumes the set, returning its tensors.
    pub fn into_tensors(self) -> Vec<Tensor> {
        self.tensors
    }

    /// The tensor called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when the set holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of f32 values across all tensors.
    pub fn num_values(&self) -> usize {
        self.tensors.iter().map(|t| t.values.len()).sum()
    }

    /// The layout: each tensor's name, shape and scope, in order.
    pub fn spec(&self) -> Vec<TensorSpec> {
        self.tensors
            .iter()
            .map(|t| TensorSpec {
                name: t.name.clone(),
                shape: t.shape.clone(),
                scope: t.scope,
            })
            .collect()
    }

    /// Only the shared tensors, in order: the part of a model that may leave the node.
    pub fn shared(&self) -> ParameterSet {
        ParameterSet {
            tensors: self
                .tensors
                .iter()
                .filter(|t| t.scope == Scope::Shared)
                .cloned()
                .collect(),
        }
    }

    /// Checks that this set has exactly `expected`'s tensors, shapes, scopes and order.
    pub fn check_layout(&self, expected: &[TensorSpec]) -> Result<(), ParameterError> {
        if self.tensors.len() != expected.len() {
            return Err(ParameterError::LayoutMismatch(format!(
                "{} tensors given, {} expected",
                self.tensors.len(),
                expected.len()
            )));
        }
        for (t, spec) in self.tensors.iter().zip(expected) {
            if t.name != spec.name || t.shape != spec.shape || t.scope != spec.scope {
                return Err(ParameterError::LayoutMismatch(format!(
                    "tensor `{}` {:?} ({}) given where `{}` {:?} ({}) expected",
                    t.name,
                    t.shape,
                    t.scope.as_str(),
                    spec.name,
                    spec.shape,
                    spec.scope.as_str()
                )));
            }
        }
        Ok(())
    }

    /// Fails on the first NaN or infinite value, naming its tensor and index.
    pub fn check_finite(&self) -> Result<(), ParameterError> {
        for t in &self.tensors {
            if let Some(index) = t.values.iter().position(|v| !v.is_finite()) {
                return Err(ParameterError::NonFinite {
                    name: t.name.clone(),
                    index,
                });
            }
        }
        Ok(())
    }

    /// All values concatenated in tensor order.
    pub fn to_flat(&self) -> Vec<f32> {
        let mut flat = Vec::with_capacity(self.num_values());
        for t in &self.tensors {
            flat.extend_from_slice(&t.values);
        }
        flat
    }

    /// Rebuilds a set with `layout` from a flat vector made by [`ParameterSet::to_flat`].
    pub fn from_flat(layout: &[TensorSpec], flat: &[f32]) -> Result<Self, ParameterError> {
        let expected: usize = layout.iter().map(TensorSpec::len).sum();
        if flat.len() != expected {
            return Err(ParameterError::FlatLength {
                expected,
                actual: flat.len(),
            });
        }
        let mut set = Self::new();
        let mut rest = flat;
        for spec in layout {
            let (head, tail) = rest.split_at(spec.len());
            set.push(
                spec.name.clone(),
                spec.shape.clone(),
                head.to_vec(),
                spec.scope,
            )?;
            rest = tail;
        }
        Ok(set)
    }

    /// Encodes the set as a safetensors file (little-endian F32), keeping scopes and order
    /// in the file's metadata so that [`ParameterSet::from_safetensors`] restores them.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, ParameterError> {
        use safetensors::tensor::{Dtype, TensorView};

        let mut metadata = HashMap::new();
        let order: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        metadata.insert(ORDER_KEY.to_string(), order.join(","));
        for t in &self.tensors {
            metadata.insert(
                format!("{SCOPE_KEY_PREFIX}{}", t.name),
                t.scope.as_str().into(),
            );
        }
        let views = self
            .tensors
            .iter()
            .map(|t| {
                let bytes: &[u8] = bytemuck::cast_slice(&t.values);
                TensorView::new(Dtype::F32, t.shape.clone(), bytes)
                    .map(|view| (t.name.clone(), view))
                    .map_err(|e| ParameterError::Safetensors(format!("tensor `{}`: {e}", t.name)))
            })
            .collect::<Result<BTreeMap<_, _>, _>>()?;
        safetensors::serialize(views, Some(metadata))
            .map_err(|e| ParameterError::Safetensors(e.to_string()))
    }

    /// Decodes a safetensors file. Tensors must be F32. Files written by other tools
    /// (without Hansa's metadata) load with every tensor shared, in name order.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Self, ParameterError> {
        use safetensors::tensor::{Dtype, SafeTensors};

        let err = |e: safetensors::SafeTensorError| ParameterError::Safetensors(e.to_string());
        let (_, header) = SafeTensors::read_metadata(bytes).map_err(err)?;
        let metadata = header.metadata().clone().unwrap_or_default();
        let file = SafeTensors::deserialize(bytes).map_err(err)?;

        let mut names: Vec<String> = match metadata.get(ORDER_KEY) {
            Some(order) if !order.is_empty() => order.split(',').map(str::to_string).collect(),
            _ => file.names().into_iter().map(str::to_string).collect(),
        };
        if !metadata.contains_key(ORDER_KEY) {
            names.sort();
        }

        let mut set = Self::new();
        for name in names {
            let view = file.tensor(&name).map_err(err)?;
            if view.dtype() != Dtype::F32 {
                return Err(ParameterError::Safetensors(format!(
                    "tensor `{name}` is {:?}; only F32 is supported",
                    view.dtype()
                )));
            }
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let scope = match metadata
                .get(&format!("{SCOPE_KEY_PREFIX}{name}"))
                .map(String::as_str)
            {
                Some("private") => Scope::Private,
                _ => Scope::Shared,
            };
            set.push(name, view.shape().to_vec(), values, scope)?;
        }
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ParameterSet {
        let mut set = ParameterSet::new();
        set.push(
            "user_embedding",
            vec![2, 2],
            vec![1.0, 2.0, 3.0, 4.0],
            Scope::Private,
        )
        .unwrap();
        set.push("item_embedding", vec![3, 2], vec![0.5; 6], Scope::Shared)
            .unwrap();
        set.push("global_bias", vec![], vec![3.5], Scope::Shared)
            .unwrap();
        set
    }

    #[test]
    fn push_refuses_values_that_do_not_fill_the_shape() {
        let mut set = ParameterSet::new();
        let err = set
            .push("w", vec![2, 3], vec![0.0; 5], Scope::Shared)
            .unwrap_err();
        assert_eq!(
            err,
            ParameterError::ShapeMismatch {
                name: "w".into(),
                shape: vec![2, 3],
                expected: 6,
                actual: 5
            }
        );
    }

    #[test]
    fn push_refuses_a_duplicate_name() {
        let mut set = sample();
        let err = set
            .push("global_bias", vec![], vec![0.0], Scope::Shared)
            .unwrap_err();
        assert_eq!(err, ParameterError::DuplicateName("global_bias".into()));
    }

    #[test]
    fn shared_view_drops_private_tensors_and_keeps_order() {
        let shared = sample().shared();
        let names: Vec<_> = shared.tensors().iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["item_embedding", "global_bias"]);
        assert_eq!(shared.num_values(), 7);
    }

    #[test]
    fn flat_round_trip_restores_the_set() {
        let set = sample();
        let flat = set.to_flat();
        assert_eq!(flat.len(), 11);
        assert_eq!(flat[..4], [1.0, 2.0, 3.0, 4.0]);
        assert_eq!(flat[10], 3.5);
        assert_eq!(ParameterSet::from_flat(&set.spec(), &flat).unwrap(), set);
    }

    #[test]
    fn from_flat_refuses_a_wrong_length() {
        let err = ParameterSet::from_flat(&sample().spec(), &[0.0; 10]).unwrap_err();
        assert_eq!(
            err,
            ParameterError::FlatLength {
                expected: 11,
                actual: 10
            }
        );
    }

    #[test]
    fn check_layout_names_the_first_difference() {
        let set = sample();
        let mut other = set.spec();
        other[1].shape = vec![4, 2];
        let err = set.check_layout(&other).unwrap_err();
        assert!(err.to_string().contains("`item_embedding` [3, 2]"), "{err}");
        assert!(set.check_layout(&set.spec()).is_ok());
    }

    #[test]
    fn check_finite_names_tensor_and_index() {
        let mut set = sample();
        set.values_mut().nth(1).unwrap()[4] = f32::NAN;
        assert_eq!(
            set.check_finite().unwrap_err(),
            ParameterError::NonFinite {
                name: "item_embedding".into(),
                index: 4
            }
        );
    }

    #[test]
    fn safetensors_round_trip_keeps_order_and_scope() {
        let set = sample();
        let bytes = set.to_safetensors().unwrap();
        assert_eq!(ParameterSet::from_safetensors(&bytes).unwrap(), set);
    }

    #[test]
    fn safetensors_without_hansa_metadata_loads_as_shared_in_name_order() {
        use safetensors::tensor::{Dtype, TensorView};
        let a = [1.0f32, 2.0];
        let b = [3.0f32];
        let views = vec![
            (
                "b",
                TensorView::new(Dtype::F32, vec![1], bytemuck::cast_slice(&b)).unwrap(),
            ),
            (
                "a",
                TensorView::new(Dtype::F32, vec![2], bytemuck::cast_slice(&a)).unwrap(),
            ),
        ];
        let bytes = safetensors::serialize(views, None).unwrap();
        let set = ParameterSet::from_safetensors(&bytes).unwrap();
        assert_eq!(set.tensors()[0].name, "a");
        assert_eq!(set.tensors()[0].values, [1.0, 2.0]);
        assert!(set.tensors().iter().all(|t| t.scope == Scope::Shared));
    }

    #[test]
    fn safetensors_refuses_garbage() {
        let err = ParameterSet::from_safetensors(b"not a safetensors file").unwrap_err();
        assert!(matches!(err, ParameterError::Safetensors(_)), "{err}");
    }
}
